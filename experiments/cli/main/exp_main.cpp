// bin/tb_exp, the one multi-call binary behind every bin/exp_<method> and bin/exp_loss_<loss>
// link (busybox style): it dispatches on the name it is called by.
#include "experiments/cli/commands.h"

int main(int argc, char** argv) { return tb::MultiCallMain(argc, argv); }
