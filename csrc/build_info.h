#pragma once
#include <map>
#include <string>

namespace convpool {

// Facts fixed when the library was compiled (plus the parallel backend ATen reports).
std::map<std::string, std::string> build_info();

}  // namespace convpool
