// The one main every exp_<method> binary is built from; CMake sets TB_METHOD_NAME.
#include "experiments/cli/commands.h"

int main(int argc, char** argv) { return tb::ExperimentMain(TB_METHOD_NAME, argc, argv); }
