// The declarations are in include/CLibFuzzer.h; the definitions come from libFuzzer.
#include "CLibFuzzer.h"
