// Times GetRandom through keyhop's ESAPI wrapper (native/tpm2/esys_context.cc) without Node, with and
// without the parameter-encryption session, to tell the library's cost from the addon's
// (docs/performance.md, TPM section). Against a running swtpm:
//
//   g++ -std=c++17 -O2 -Inative/tpm2 bench/native/esys-getrandom.cc native/tpm2/esys_context.cc
//       $(pkg-config --cflags --libs tss2-esys tss2-tctildr tss2-rc tss2-mu) -o /tmp/esys-getrandom
//   TSS2_LOG=all+NONE /tmp/esys-getrandom "swtpm:host=127.0.0.1,port=2321"
#include <chrono>
#include <cstdio>
#include <vector>

#include "esys_context.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <tcti>\n", argv[0]);
    return 2;
  }
  for (int encrypted = 1; encrypted >= 0; encrypted--) {
    keyhop::tpm2::EsysContext tpm;
    if (!tpm.Open(argv[1], encrypted == 1).ok()) {
      std::fprintf(stderr, "cannot open %s\n", argv[1]);
      return 1;
    }
    std::vector<uint8_t> out;
    for (int i = 0; i < 10; i++) tpm.GetRandom(32, &out);
    const int n = 200;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) tpm.GetRandom(32, &out);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("parameter encryption %s: %.3f ms per GetRandom(32)\n", encrypted ? "on " : "off", ms / n);
    tpm.Close();
  }
  return 0;
}
