// i2c_transaction.h: one ATECC608 transaction over Linux i2c-dev, free of Node-API so it can run on a
// worker thread (and be reused by a C++ test or tool). See native/README.md.
#ifndef KEYHOP_ATECC608_I2C_TRANSACTION_H
#define KEYHOP_ATECC608_I2C_TRANSACTION_H

#include <cstdint>
#include <string>
#include <vector>

namespace keyhop {
namespace atecc608 {

// Limits checked on the JS thread before a transaction is queued.
constexpr int kAddressMin = 0x08;      // 7-bit addresses below are reserved (I2C spec, table 4)
constexpr int kAddressMax = 0x77;      // 0x78..0x7F: 10-bit and reserved
constexpr size_t kPacketMin = 7;       // count, opcode, param1, param2 (2), CRC (2)
constexpr size_t kPacketMax = 7 + 155; // the datasheet allows 0..155 data bytes
constexpr size_t kMaxSteps = 16;
constexpr int kResponseMin = 4;        // count, status, CRC
constexpr int kResponseMax = 99;       // keyhop's largest response (vaults/atecc608/protocol/packet.ts)

enum class End { Idle, Sleep, None };

struct Step {
  std::vector<uint8_t> packet;  // count..CRC, without the 0x03 word address
  uint32_t maxExecMs = 0;
};

struct Request {
  std::string device;           // e.g. /dev/i2c-1
  int address = 0x60;           // 7-bit
  bool wake = true;
  uint32_t wakeDelayUs = 1500;
  uint32_t wakeRetries = 3;
  std::vector<Step> steps;
  End end = End::Idle;
  uint32_t pollIntervalUs = 1000;
  uint32_t lockTimeoutMs = 5000;
};

struct Timings {
  uint64_t wakeUs = 0;
  std::vector<uint64_t> stepsUs;
  uint64_t totalUs = 0;
};

struct Result {
  bool ok = false;
  // On failure: a stable code (ENOENT, EACCES, EBUSY, NACK, TIMEOUT, BAD_RESPONSE, SELFTEST_FAILED,
  // LOCK_TIMEOUT, IO_ERROR, UNSUPPORTED), the errno behind it (0 if none) and a message that names
  // the device and the address.
  std::string code;
  int sysErrno = 0;
  std::string message;
  std::vector<std::vector<uint8_t>> responses;
  bool haveWakeToken = false;
  std::vector<uint8_t> wakeToken;
  Timings timings;
};

// Runs the whole transaction (open, lock, address, wake, steps, idle/sleep, unlock, close).
// Blocking; call it on a worker thread. Never throws.
Result RunTransaction(const Request& req);

}  // namespace atecc608
}  // namespace keyhop

#endif
