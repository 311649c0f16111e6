// libember, the ember VMM as a library: everything a program needs.
//   ember/error.h  ember::Error
//   ember/vm.h     ember::embed::VmConfig, Vm, ExitInfo
#pragma once

#include "ember/error.h"
#include "ember/vm.h"
