#ifndef SLIPWAY_CLIBFUZZER_H
#define SLIPWAY_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>
// setxattr, for the seed trees (Glibc does not export it).
#include <sys/xattr.h>

/// libFuzzer's driver (libclang_rt.fuzzer, linked by -sanitize=fuzzer): parses libFuzzer's
/// options from argv and runs `callback` over the corpus and the inputs it makes.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

/// unshare(CLONE_NEWUSER), which Swift's Glibc does not export (it needs _GNU_SOURCE).
int slipway_fuzz_unshare_user(void);

#endif
