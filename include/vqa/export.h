// Symbol visibility for the public API. The library is built with hidden visibility; everything a user may
// name (classes, functions, and exception types that cross the library boundary) is marked VQA_API.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define VQA_API __attribute__((visibility("default")))
#else
#define VQA_API
#endif
