// What the CPU can do beyond the baseline the addon is compiled for.
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace igpt {

bool halfFloatsSupported() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool supported = [] {
    __builtin_cpu_init();
    unsigned eax, ebx, ecx, edx;
    // GCC 12's __builtin_cpu_supports("f16c") answers false on CPUs that have it: ask CPUID.
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
    return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return supported;
#else
  return false;
#endif
}

}  // namespace igpt
