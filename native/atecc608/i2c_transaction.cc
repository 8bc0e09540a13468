// i2c_transaction.cc: the ATECC608 I2C transaction (atecc608.md §1) on Linux i2c-dev.
//
// One transaction = open /dev/i2c-N, flock it (other processes wait, so a wake window is never
// shared), select the chip's address, wake it, run each command (write, poll, read), idle or sleep
// it, unlock, close. Uses only open/flock/ioctl(I2C_SLAVE)/read/write/close, like cryptoauthlib's
// Linux HAL, so the LD_PRELOAD shim in native/testing/ can redirect all of it to an emulator.
//
// Kernel facts used (include/uapi/linux/i2c-dev.h, Documentation/i2c/dev-interface.rst and
// Documentation/i2c/fault-codes.rst): I2C_SLAVE = 0x0703 sets the address used by read()/write();
// it fails with EBUSY when a kernel driver is bound at that address; an address NACK surfaces as
// ENXIO, though some adapters report EREMOTEIO or EIO, so all three count as NACK here.
#include "i2c_transaction.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#ifdef __linux__
#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#endif

#ifndef I2C_SLAVE
#define I2C_SLAVE 0x0703  // include/uapi/linux/i2c-dev.h
#endif

namespace keyhop {
namespace atecc608 {

namespace {

std::string Hex(const uint8_t* p, size_t n) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n; i++) {
    std::snprintf(b, sizeof b, i == 0 ? "%02x" : " %02x", p[i]);
    s += b;
  }
  return s;
}

std::string Where(const Request& req) {
  char a[8];
  std::snprintf(a, sizeof a, "0x%02x", req.address);
  return req.device + "@" + a;
}

Result Fail(const Request& req, const char* code, int err, const std::string& text) {
  Result r;
  r.ok = false;
  r.code = code;
  r.sysErrno = err;
  r.message = "ATECC608 " + Where(req) + ": " + text;
  if (err != 0) r.message += std::string(" (") + std::strerror(err) + ")";
  return r;
}

}  // namespace

#ifdef __linux__

namespace {

// Wake token and the self-test-failure token cryptoauthlib accepts (atecc608.md §1.2, §9.1).
const uint8_t kWakeOk[4] = {0x04, 0x11, 0x33, 0x43};
const uint8_t kWakeSelfTest[4] = {0x04, 0x07, 0xC4, 0x40};
// Word addresses (datasheet "Word Address Values", atecc608.md §1.3).
const uint8_t kWordReset = 0x00;
const uint8_t kWordSleep = 0x01;
const uint8_t kWordIdle = 0x02;
const uint8_t kWordCommand = 0x03;
// A general call (address 0) of one byte 0x01 is cryptoauthlib's wake pulse (calib_wakeup_i2c).
const uint8_t kGeneralCallWake = 0x01;

constexpr uint64_t kPollMarginUs = 50000;   // scheduling slack on top of the execution budget
constexpr int kWriteRetries = 4;            // a command write NACKed right after wake: retry briefly
constexpr int kReadRetries = 3;
constexpr uint32_t kRetryGapUs = 1000;
constexpr int kMaxStaleWakes = 2;           // idle + re-wake when the chip was already awake
// tWHIST (atecc608.md §1.2): with the power-on self-test enabled (ChipOptions bit 0) the chip NACKs
// for up to 20 ms after the wake pulse instead of tWHI = 1.5 ms.
constexpr uint64_t kWakeSelfTestUs = 20000;

uint64_t NowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

void SleepUs(uint64_t us) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(us / 1000000u);
  ts.tv_nsec = static_cast<long>((us % 1000000u) * 1000u);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool IsNack(int err) { return err == ENXIO || err == EREMOTEIO || err == EIO; }

enum class Io { Ok, Nack, Error };

class Bus {
 public:
  explicit Bus(const Request& req) : req_(req) {}
  ~Bus() {
    if (fd_ >= 0) {
      if (locked_) flock(fd_, LOCK_UN);
      close(fd_);
    }
  }
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  bool Open(Result* err) {
    do {
      fd_ = open(req_.device.c_str(), O_RDWR | O_CLOEXEC);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ >= 0) return true;
    int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO || e == ENOTDIR) {
      *err = Fail(req_, "ENOENT", e, "cannot open the I2C adapter: it does not exist");
    } else if (e == EACCES || e == EPERM) {
      *err = Fail(req_, "EACCES", e, "cannot open the I2C adapter: permission denied");
    } else {
      *err = Fail(req_, "IO_ERROR", e, "cannot open the I2C adapter");
    }
    return false;
  }

  bool Lock(Result* err) {
    const uint64_t deadline = NowUs() + static_cast<uint64_t>(req_.lockTimeoutMs) * 1000u;
    uint64_t gap = 200;
    for (;;) {
      if (flock(fd_, LOCK_EX | LOCK_NB) == 0) {
        locked_ = true;
        return true;
      }
      int e = errno;
      if (e == EINTR) continue;
      if (e != EWOULDBLOCK) {
        *err = Fail(req_, "IO_ERROR", e, "flock failed");
        return false;
      }
      uint64_t now = NowUs();
      if (now >= deadline) {
        *err = Fail(req_, "LOCK_TIMEOUT", 0,
                    "another process held the bus lock for more than " + std::to_string(req_.lockTimeoutMs) +
                        " ms");
        return false;
      }
      SleepUs(gap < deadline - now ? gap : deadline - now);
      if (gap < 5000) gap *= 2;
    }
  }

  bool SetAddress(int address, Result* err) {
    if (ioctl(fd_, I2C_SLAVE, static_cast<unsigned long>(address)) == 0) return true;
    int e = errno;
    if (e == EBUSY) {
      *err = Fail(req_, "EBUSY", e,
                  "the address is in use by a kernel driver (probably atmel-ecc, from a device-tree "
                  "overlay); unbind it, e.g. echo 1-0060 > /sys/bus/i2c/drivers/atmel-ecc/unbind");
    } else if (e == ENOTTY) {
      *err = Fail(req_, "IO_ERROR", e, "not an i2c-dev device (ioctl I2C_SLAVE refused)");
    } else {
      *err = Fail(req_, "IO_ERROR", e, "ioctl(I2C_SLAVE) failed");
    }
    return false;
  }

  Io Write(const uint8_t* p, size_t n, int* errOut) {
    for (;;) {
      ssize_t w = write(fd_, p, n);
      if (w == static_cast<ssize_t>(n)) return Io::Ok;
      if (w < 0 && errno == EINTR) continue;
      int e = w < 0 ? errno : EIO;
      *errOut = e;
      return w < 0 && IsNack(e) ? Io::Nack : Io::Error;
    }
  }

  Io Read(uint8_t* p, size_t n, int* errOut) {
    for (;;) {
      ssize_t r = read(fd_, p, n);
      if (r == static_cast<ssize_t>(n)) return Io::Ok;
      if (r < 0 && errno == EINTR) continue;
      int e = r < 0 ? errno : EIO;
      *errOut = e;
      return r < 0 && IsNack(e) ? Io::Nack : Io::Error;
    }
  }

  // Writes, retrying a NACK up to `retries` times 1 ms apart.
  Io WriteRetry(const uint8_t* p, size_t n, int retries, int* errOut) {
    for (int i = 0;; i++) {
      Io r = Write(p, n, errOut);
      if (r != Io::Nack || i >= retries) return r;
      SleepUs(kRetryGapUs);
    }
  }

  Io ReadRetry(uint8_t* p, size_t n, int retries, int* errOut) {
    for (int i = 0;; i++) {
      Io r = Read(p, n, errOut);
      if (r != Io::Nack || i >= retries) return r;
      SleepUs(kRetryGapUs);
    }
  }

 private:
  const Request& req_;
  int fd_ = -1;
  bool locked_ = false;
};

// Wake as current cryptoauthlib does on Linux (calib_wakeup_i2c): general call of one byte 0x01
// (its NACK is expected), back to the chip's address, wait tWHI, read the 4-byte wake response.
bool Wake(Bus& bus, const Request& req, Result* out) {
  uint32_t nacks = 0;
  int stale = 0;
  for (;;) {
    if (!bus.SetAddress(0, out)) return false;
    int ignored = 0;
    (void)bus.Write(&kGeneralCallWake, 1, &ignored);
    // tWHI/tWHIST run from the end of the wake pulse, i.e. once the general-call write has
    // returned (the kernel's transfer is synchronous). Taking the time before the write would
    // count the bus transfer itself (and, through the test shim, its round trip) as waiting.
    const uint64_t pulseEnd = NowUs();
    if (!bus.SetAddress(req.address, out)) return false;
    SleepUs(req.wakeDelayUs);
    uint8_t tok[4] = {0, 0, 0, 0};
    int e = 0;
    uint64_t readAt = NowUs();
    Io r = bus.Read(tok, sizeof tok, &e);
    // A chip still in its power-on self-test NACKs until tWHIST: keep reading before pulsing
    // again, until a read that started after tWHIST was NACKed too.
    while (r == Io::Nack && readAt < pulseEnd + kWakeSelfTestUs) {
      SleepUs(kRetryGapUs);
      readAt = NowUs();
      r = bus.Read(tok, sizeof tok, &e);
    }
    if (r == Io::Nack) {
      if (nacks++ >= req.wakeRetries) {
        *out = Fail(req, "NACK", e,
                    "no answer to the wake after " + std::to_string(nacks) +
                        " attempt(s): no chip at this address, or it does not wake (bus faster than "
                        "100 kHz?)");
        return false;
      }
      continue;
    }
    if (r == Io::Error) {
      *out = Fail(req, "IO_ERROR", e, "reading the wake response failed");
      return false;
    }
    if (std::memcmp(tok, kWakeOk, 4) == 0) {
      out->haveWakeToken = true;
      out->wakeToken.assign(tok, tok + 4);
      return true;
    }
    if (std::memcmp(tok, kWakeSelfTest, 4) == 0) {
      *out = Fail(req, "SELFTEST_FAILED", 0, "the chip woke with a self-test failure (04 07 c4 40)");
      return false;
    }
    // Anything else: the chip was already awake and we read old output. Idle it and wake again.
    if (stale++ >= kMaxStaleWakes) {
      *out = Fail(req, "BAD_RESPONSE", 0, "unexpected wake response " + Hex(tok, 4) + " (after idling the chip " +
                                              std::to_string(kMaxStaleWakes) + " times)");
      return false;
    }
    (void)bus.WriteRetry(&kWordIdle, 1, kWriteRetries, &e);
  }
}

bool RunStep(Bus& bus, const Request& req, size_t index, const Step& step, Result* out) {
  const std::string which = "step " + std::to_string(index + 1) + "/" + std::to_string(req.steps.size());
  std::vector<uint8_t> frame;
  frame.reserve(step.packet.size() + 1);
  frame.push_back(kWordCommand);
  frame.insert(frame.end(), step.packet.begin(), step.packet.end());
  int e = 0;
  Io r = bus.WriteRetry(frame.data(), frame.size(), kWriteRetries, &e);
  if (r != Io::Ok) {
    *out = Fail(req, r == Io::Nack ? "NACK" : "IO_ERROR", e, which + ": writing the command failed");
    return false;
  }
  // Poll as cryptoauthlib does (calib_execute_command; trace in atecc608.md §1.8): write the word
  // address 0x00 (rewinds the output pointer; NACKed while the chip is busy), then read the count.
  const uint64_t deadline = NowUs() + static_cast<uint64_t>(step.maxExecMs) * 1000u + kPollMarginUs;
  // The first poll goes at once (cryptoauthlib waits 1 ms first): a busy chip just NACKs it, one
  // address byte on the bus, and commands that finish early (Read, Info) answer up to 1 ms sooner.
  uint8_t count = 0;
  for (;;) {
    r = bus.Write(&kWordReset, 1, &e);
    if (r == Io::Ok) r = bus.Read(&count, 1, &e);
    if (r == Io::Ok) break;
    if (r == Io::Error) {
      *out = Fail(req, "IO_ERROR", e, which + ": polling for the response failed");
      return false;
    }
    if (NowUs() >= deadline) {
      *out = Fail(req, "TIMEOUT", 0,
                  which + ": no response within " + std::to_string(step.maxExecMs) + " ms (+" +
                      std::to_string(kPollMarginUs / 1000) + " ms margin); the chip stayed busy");
      return false;
    }
    SleepUs(req.pollIntervalUs);
  }
  if (count < kResponseMin || count > kResponseMax) {
    *out = Fail(req, "BAD_RESPONSE", 0,
                which + ": impossible response count byte " + Hex(&count, 1) + " (expected 4..99)");
    return false;
  }
  std::vector<uint8_t> resp(count);
  resp[0] = count;
  // The chip's output pointer persists between reads: this continues after the count byte.
  r = bus.ReadRetry(resp.data() + 1, count - 1u, kReadRetries, &e);
  if (r != Io::Ok) {
    *out = Fail(req, r == Io::Nack ? "NACK" : "IO_ERROR", e, which + ": reading the response failed");
    return false;
  }
  out->responses.push_back(std::move(resp));
  return true;
}

// Everything between open and close; the Bus destructor unlocks and closes.
bool RunOpen(Bus& bus, const Request& req, Result* res) {
  if (!bus.Open(res) || !bus.Lock(res) || !bus.SetAddress(req.address, res)) return false;
  if (req.wake) {
    const uint64_t w0 = NowUs();
    if (!Wake(bus, req, res)) return false;
    res->timings.wakeUs = NowUs() - w0;
  }
  for (size_t i = 0; i < req.steps.size(); i++) {
    const uint64_t s0 = NowUs();
    if (!RunStep(bus, req, i, req.steps[i], res)) return false;
    res->timings.stepsUs.push_back(NowUs() - s0);
  }
  if (req.end != End::None) {
    const uint8_t word = req.end == End::Sleep ? kWordSleep : kWordIdle;
    int e = 0;
    // Failure is not fatal: the responses are complete, and the watchdog puts the chip to sleep.
    (void)bus.WriteRetry(&word, 1, kWriteRetries, &e);
  }
  return true;
}

}  // namespace

Result RunTransaction(const Request& req) {
  const uint64_t t0 = NowUs();
  Result res;
  {
    Bus bus(req);
    if (!RunOpen(bus, req, &res)) return res;
  }
  res.ok = true;
  res.timings.totalUs = NowUs() - t0;
  return res;
}

#else  // !__linux__

Result RunTransaction(const Request& req) {
  return Fail(req, "UNSUPPORTED", 0, "I2C access through i2c-dev is only implemented on Linux");
}

#endif

}  // namespace atecc608
}  // namespace keyhop
