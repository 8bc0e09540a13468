# node-gyp build of the ATECC608 I2C addon -> build/Release/keyhop_atecc608.node, of the AEAD addon
# -> build/Release/keyhop_aead.node (OpenSSL's headers from Node's own include/node/openssl; its
# symbols from the running node at load time), and of the TPM 2.0
# addon -> build/Release/keyhop_tpm2.node when tpm2-tss is installed (pkg-config finds tss2-esys,
# tss2-tctildr, tss2-rc and tss2-mu, e.g. Debian's libtss2-dev); without it that target is left out
# and only the ATECC608 addon is built. native/CMakeLists.txt builds the same sources with cmake-js
# (keep the source lists equal; test/integration/atecc608-addon.test.ts and tpm.test.ts check that
# they are). See native/README.md.
{
  "variables": {
    "keyhop_tss2%": "<!(pkg-config --exists tss2-esys tss2-tctildr tss2-rc tss2-mu 2>/dev/null && echo 1 || echo 0)"
  },
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
    },
    {
      "target_name": "keyhop_aead",
      "sources": [
        "native/aead/addon.cc"
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
  ],
  "conditions": [
    ["OS!='win' and keyhop_tss2==1", {
      "targets": [
        {
          "target_name": "keyhop_tpm2",
          "sources": [
            "native/tpm2/addon.cc",
            "native/tpm2/esys_context.cc"
          ],
          "include_dirs": [
            "<!(node -p \"require('node-addon-api').include_dir\")"
          ],
          "defines": [
            "NAPI_VERSION=8",
            "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"
          ],
          "cflags": ["-Wall", "-Wextra", "-fno-exceptions"],
          "cflags_cc": [
            "-std=c++17", "-Wall", "-Wextra", "-fno-exceptions",
            "<!@(pkg-config --cflags tss2-esys tss2-tctildr tss2-rc tss2-mu)"
          ],
          "libraries": ["<!@(pkg-config --libs tss2-esys tss2-tctildr tss2-rc tss2-mu)"],
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "GCC_ENABLE_CPP_EXCEPTIONS": "NO",
            "MACOSX_DEPLOYMENT_TARGET": "10.15",
            "OTHER_CPLUSPLUSFLAGS": ["<!@(pkg-config --cflags tss2-esys tss2-tctildr tss2-rc tss2-mu)"]
          }
        }
      ]
    }]
  ]
}
