// Compiled once to build the LibTorch precompiled header that every torch target reuses.
#include <torch/torch.h>
