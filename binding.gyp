# node-gyp build of the ATECC608 I2C addon -> build/Release/keyhop_atecc608.node.
# native/CMakeLists.txt builds the same sources with cmake-js (keep the two source lists equal;
# test/integration/atecc608-addon.test.ts checks that they are). See native/README.md.
{
  "targets": [
    {
      "target_name": "keyhop_atecc608",
      "sources": [
        "native/atecc608/addon.cc",
        "native/atecc608/i2c_transaction.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"
      ],
      "cflags": ["-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-fno-exceptions"],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_ENABLE_CPP_EXCEPTIONS": "NO",
        "MACOSX_DEPLOYMENT_TARGET": "10.15"
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 0, "AdditionalOptions": ["/std:c++17"] }
      }
    }
  ]
}
