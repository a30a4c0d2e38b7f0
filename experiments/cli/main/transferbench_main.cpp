#include "experiments/cli/commands.h"

int main(int argc, char** argv) { return tb::TransferbenchMain(argc, argv); }
