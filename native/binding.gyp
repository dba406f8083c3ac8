{
  "variables": {
    # 1 when oneDNN's header is installed (Debian libdnnl-dev): the bf16 products are built in.
    "with_dnnl%": "<!(node ../scripts/build-native.mjs --has-dnnl)"
  },
  "targets": [
    {
      "target_name": "igpt_native",
      "sources": ["addon.cc", "thread_pool.cc", "gemm.cc", "gemm_bf16.cc", "gemm_packed.cc", "attention.cc", "attention_simd.cc", "decode.cc", "cpu.cc", "pointwise.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-O2"],
      "cflags": ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi"],
      "include_dirs+": ["/usr/include/x86_64-linux-gnu/openblas-pthread", "/usr/include/openblas"],
      "libraries": ["-lopenblas", "-lpthread"],
      "conditions": [
        ["with_dnnl==1", {
          "defines": ["IGPT_WITH_DNNL"],
          "libraries": ["-ldnnl"]
        }]
      ]
    }
  ]
}
