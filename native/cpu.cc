// What the CPU can do beyond the baseline the addon is compiled for.
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <unistd.h>

#include <initializer_list>

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

int64_t lastLevelCacheBytes() {
  // glibc reads these from CPUID (x86) or /sys; 0 or -1 where it cannot tell.
  for (const int name : {_SC_LEVEL4_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = sysconf(name);
    if (bytes > 0) return bytes;
  }
  return 0;
}

}  // namespace igpt
