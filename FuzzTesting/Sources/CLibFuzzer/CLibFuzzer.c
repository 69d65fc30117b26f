// LLVMFuzzerRunDriver comes from libFuzzer; the rest is here.
#define _GNU_SOURCE
#include <sched.h>
#include "CLibFuzzer.h"

int slipway_fuzz_unshare_user(void) { return unshare(CLONE_NEWUSER); }
