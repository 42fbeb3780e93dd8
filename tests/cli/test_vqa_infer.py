"""vqa_infer end to end on the bundled model and example images (run by CTest with VQA_INFER set)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
VQA_INFER = os.environ.get("VQA_INFER", str(ROOT / "build/release/tools/vqa_infer"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([VQA_INFER, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def expected_lines() -> list[dict]:
    return [json.loads(line) for line in (EXAMPLES / "questions.jsonl").read_text().splitlines() if line.strip()]


def test_single_image_human_output() -> None:
    p = run("--image", str(EXAMPLES / "images/shape0.png"), "-q", "what is the red shape?",
            "-q", "what is the color of the shape?")
    assert p.returncode == 0, p.stderr
    assert "A: triangle" in p.stdout and "A: red" in p.stdout


def test_json_top_k_sorted() -> None:
    p = run("--image", str(EXAMPLES / "images/shape1.png"), "-q", "what is the color of the rectangle?",
            "--top-k", "3", "--json")
    assert p.returncode == 0, p.stderr
    record = json.loads(p.stdout)[0]
    scores = [a["score"] for a in record["answers"]]
    assert [a["answer"] for a in record["answers"]][0] == "yellow"
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0.0 < sum(scores) <= 1.0 + 1e-6


def test_batch_known_answers(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    p = run("--batch", str(EXAMPLES / "questions.jsonl"), "--output", str(out))
    assert p.returncode == 0, p.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    want = expected_lines()
    assert [r["id"] for r in records] == [w["id"] for w in want]
    wrong = [(w["question"], r["answers"][0]["answer"], w["expected"])
             for r, w in zip(records, want) if r["answers"][0]["answer"] != w["expected"]]
    assert not wrong


def test_batch_bad_lines_fail_alone(tmp_path: Path) -> None:
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "empty.png").write_bytes(b"")
    good = str(EXAMPLES / "images/shape0.png")
    lines = [
        json.dumps({"id": "a", "image": good, "question": "what is the red shape?"}),
        "{not json",
        json.dumps({"id": "b", "image": "missing.png", "question": "what color is the shape?"}),
        json.dumps({"id": "c", "image": "corrupt.png", "question": "what color is the shape?"}),
        json.dumps({"id": "d", "image": "empty.png", "question": "what color is the shape?"}),
        json.dumps({"id": "e", "image": good, "question": "?!"}),
        json.dumps({"id": "a", "image": good, "question": "what color is the shape?"}),
        json.dumps({"id": "f", "image": good}),
        json.dumps({"id": "g", "image": good, "question": "is there a circle?"}),
    ]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    p = run("--batch", str(batch))
    assert p.returncode == 3, p.stderr
    records = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(records) == len(lines)
    by_line = {r["line"]: r for r in records}
    assert by_line[1]["answers"][0]["answer"] == "triangle"
    assert by_line[9]["answers"][0]["answer"] == "no"
    for n, fragment in [(2, "not a JSON object"), (3, "missing.png"), (4, "corrupt.png"), (5, "empty.png"),
                        (6, "no words"), (7, "duplicate id"), (8, "question")]:
        assert "error" in by_line[n], by_line[n]
        assert fragment in by_line[n]["error"]["message"], by_line[n]


def test_errors_and_exit_codes(tmp_path: Path) -> None:
    assert run("--help").returncode == 0
    assert run("--no-such-option").returncode == 2
    assert run("--image", str(EXAMPLES / "images/shape0.png")).returncode == 2  # no question
    p = run("--model", str(tmp_path / "nowhere"), "--image", str(EXAMPLES / "images/shape0.png"), "-q", "what?")
    assert p.returncode == 1 and "nowhere" in p.stderr
    p = run("--image", str(EXAMPLES / "images/shape0.png"), "-q", "", "-q", "is there a circle?")
    assert p.returncode == 3 and "no words" in p.stdout and "A: no" in p.stdout
    # --device cuda answers where the build has CUDA and a device is present, and otherwise fails clearly.
    p = run("--device", "cuda", "--image", str(EXAMPLES / "images/shape0.png"), "-q", "what is the red shape?")
    if p.returncode == 0:
        assert "A: triangle" in p.stdout, p.stdout
    else:
        assert p.returncode == 1 and "cuda" in p.stderr.lower(), p.stderr


def test_attention_maps_in_json() -> None:
    p = run("--image", str(EXAMPLES / "images/shape2.png"), "-q", "what is the blue shape?", "--json",
            "--attention")
    assert p.returncode == 0, p.stderr
    att = json.loads(p.stdout)[0]["attention"]
    assert att["grid"] == [4, 4] and len(att["image_pooling"]) == att["glimpses"] * 16
    assert abs(sum(att["image_pooling"]) - att["glimpses"]) < 1e-4
    assert att["tokens"] == ["what", "is", "the", "blue", "shape"]


OPENVQA = ROOT / "tests/goldens-openvqa/mcan_tiny"


def test_region_features_file(tmp_path: Path) -> None:
    npz = run("--model", str(OPENVQA), "--features", str(OPENVQA / "image0.npz"), "-q", "what is it?", "--json",
              "-k", "3")
    assert npz.returncode == 0, npz.stderr
    record = json.loads(npz.stdout)[0]
    assert record["features"] == str(OPENVQA / "image0.npz") and len(record["answers"]) == 3
    st = run("--model", str(OPENVQA), "--features", str(OPENVQA / "image0.safetensors"), "-q", "what is it?",
             "--json", "-k", "3")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)[0]["answers"] == record["answers"]
    assert run("--model", str(OPENVQA), "--features", str(OPENVQA / "image0.npz")).returncode == 2  # no question
    assert run("--features", "a.npz", "--image", "b.png", "-q", "what?").returncode == 2
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    p = run("--model", str(OPENVQA), "--features", str(tmp_path / "broken.npz"), "-q", "what is it?")
    assert p.returncode == 3 and "broken.npz" in p.stdout and "invalid_argument" in p.stdout


def test_batch_features_lines(tmp_path: Path) -> None:
    (tmp_path / "image1.npz").write_bytes((OPENVQA / "image1.npz").read_bytes())
    lines = [
        json.dumps({"id": "a", "features": "image1.npz", "question": "what is it?"}),
        json.dumps({"id": "b", "features": str(OPENVQA / "image2.safetensors"), "question": "what is it?"}),
        json.dumps({"id": "c", "features": "missing.npz", "question": "what is it?"}),
        json.dumps({"id": "d", "features": "image1.npz", "image": "x.png", "question": "what is it?"}),
    ]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines) + "\n")
    p = run("--model", str(OPENVQA), "--batch", str(tmp_path / "batch.jsonl"))
    assert p.returncode == 3, p.stderr
    out = {r["id"]: r for r in map(json.loads, p.stdout.splitlines())}
    assert out["a"]["features"] == str(tmp_path / "image1.npz") and "answers" in out["a"]
    assert "answers" in out["b"]
    assert out["c"]["error"]["code"] == "io" and "missing.npz" in out["c"]["error"]["message"]
    assert "not both" in out["d"]["error"]["message"]


# --profile and --trace (docs/profiling.md): the stages of the bundled model (CNN, LSTM, MCAN 2 + 2 layers).
MODEL_STAGES = ["answer", "tokenize", "prepare_image", "decode", "preprocess", "forward", "image_encoder",
                "image.cnn", "image.adapter", "text_encoder", "text.embedding", "text.lstm", "fusion.text.0",
                "fusion.text.0.att", "fusion.text.0.ffn", "fusion.text.1", "fusion.image.0", "fusion.image.0.self_att",
                "fusion.image.0.cross_att", "fusion.image.0.ffn", "fusion.image.1", "pool.image", "pool.text",
                "head.norm", "head.classifier", "scoring"]


def profile_rows(stderr: str) -> dict[str, list[str]]:
    """The --profile table by stage name (with its indentation): [calls, total ms, mean ms, % call]."""
    lines = stderr.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("stage ") and "% call" in line)
    rows = {}
    for line in lines[header + 1:]:
        name, *columns = line.rsplit(maxsplit=4)
        rows[name] = columns
    return rows


def test_profile_table() -> None:
    p = run("--image", str(EXAMPLES / "images/shape0.png"), "-q", "what is the red shape?",
            "-q", "what is the color of the shape?", "--profile")
    assert p.returncode == 0, p.stderr
    assert "A: triangle" in p.stdout  # the answers are unchanged, and the table is on stderr only
    assert "stage" not in p.stdout
    rows = profile_rows(p.stderr)
    assert rows["answer"][0] == "1" and rows["answer"][3] == "100.0"
    assert rows["load"][0] == "1" and rows["load"][3] == "100.0"
    assert rows["  read_model_dir"][0] == "1"
    indent = {"answer": 0, "tokenize": 1, "forward": 1, "image.cnn": 3, "fusion.image.0": 2,
              "fusion.image.0.cross_att": 3, "head.classifier": 2, "scoring": 1}
    for name, depth in indent.items():
        assert "  " * depth + name in rows, (name, list(rows))
    forward = rows["  forward"]
    assert 0.0 < float(forward[1]) <= float(rows["answer"][1])
    assert 0.0 < float(forward[3]) <= 100.0
    children = [float(rows["  " + name][3]) for name in ["tokenize", "prepare_image", "forward", "scoring"]]
    assert sum(children) <= 100.0 + 0.5  # rounded to 0.1 each


def test_profile_sums_batch_chunks(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    p = run("--batch", str(EXAMPLES / "questions.jsonl"), "--max-batch", "10", "--output", str(out), "--profile")
    assert p.returncode == 0, p.stderr
    rows = profile_rows(p.stderr)
    lines = len(expected_lines())
    chunks = (lines + 9) // 10
    assert rows["answer"][0] == str(chunks)  # one call per chunk of the batch file, summed
    assert rows["  forward"][0] == str(chunks)
    assert float(rows["answer"][2]) == pytest.approx(float(rows["answer"][1]) / chunks, abs=2e-3)
    assert len(out.read_text().splitlines()) == lines


def test_trace_is_a_nested_chrome_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    p = run("--image", str(EXAMPLES / "images/shape1.png"), "-q", "what is the color of the rectangle?",
            "--trace", str(trace))
    assert p.returncode == 0, p.stderr
    assert "stage" not in p.stderr  # --trace alone prints no table
    doc = json.loads(trace.read_text())
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert complete and all(e["dur"] >= 0 and e["ts"] >= 0 for e in complete)
    names = [e["name"] for e in complete]
    assert names[0] == "load" and names.count("answer") == 1
    assert [n for n in names if n in MODEL_STAGES] == MODEL_STAGES
    labels = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert labels[complete[0]["tid"]] == "host"

    # Each event lies within its parent: the nearest earlier event of its track one level up.
    eps = 2e-3  # microseconds: ts and dur are each rounded to the nanosecond
    open_events: dict[int, list[dict]] = {}
    for e in complete:
        stack = open_events.setdefault(e["tid"], [])
        depth = e["args"]["depth"]
        assert depth <= len(stack), e
        del stack[depth:]
        if stack:
            parent = stack[-1]
            assert e["ts"] >= parent["ts"] - eps, (e, parent)
            assert e["ts"] + e["dur"] <= parent["ts"] + parent["dur"] + eps, (e, parent)
        stack.append(e)
    by_name = {e["name"]: e for e in complete}
    for before, after in zip(["load", "image.cnn", "fusion.text.0", "pool.image"],
                             ["answer", "fusion.text.0", "pool.image", "head.classifier"]):
        assert by_name[before]["ts"] + by_name[before]["dur"] <= by_name[after]["ts"] + eps, (before, after)


def test_trace_file_errors(tmp_path: Path) -> None:
    p = run("--image", str(EXAMPLES / "images/shape0.png"), "-q", "what?", "--trace", str(tmp_path / "no/such/dir.json"))
    assert p.returncode == 1 and "no/such/dir.json" in p.stderr
    assert run("--image", str(EXAMPLES / "images/shape0.png"), "-q", "what?", "--trace").returncode == 2
