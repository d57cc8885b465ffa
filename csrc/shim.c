#include "csrc/dpdk.h"

int dvr_errno(void) { return rte_errno; }
