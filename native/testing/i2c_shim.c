/*
 * i2c_shim.c: LD_PRELOAD library that redirects Linux i2c-dev (/dev/i2c-N) to the ATECC608 emulator's
 * Unix socket, speaking the protocol of docs/protocols/i2c-emulator.md. Programs that use i2c-dev the
 * ordinary way (keyhop's addon, i2ctransfer, cryptoauthlib's Linux HAL) run unchanged against the
 * emulator or a scripted test server. Test rig only: never ship or preload it anywhere else.
 *
 * Environment:
 *   KEYHOP_I2C_SOCKET  emulator socket; unset: every call passes straight through to libc
 *   KEYHOP_I2C_BUSES   optional comma-separated bus numbers to redirect (default: all)
 *   KEYHOP_I2C_BUSY    optional comma-separated 7-bit addresses (0x60 or 96) for which
 *                      ioctl(I2C_SLAVE) fails with EBUSY, as when a kernel driver such as
 *                      atmel-ecc is bound there (I2C_SLAVE_FORCE still succeeds). Test knob.
 *
 * Model: open() of /dev/i2c-N connects one stream socket, sends HELLO (bus N) and returns that
 * socket, so close/dup/fork behave as with a real device node. A small table (mutex-protected)
 * maps redirected descriptors to a shared connection record (address, bus, lock file); dup'ed
 * descriptors share it, like the kernel shares an i2c client per open file description.
 * read/write/ioctl/flock on a redirected descriptor become frames or lock-file operations;
 * everything else, and every other descriptor, goes to the real libc (dlsym(RTLD_NEXT)).
 * A NACK from the emulator becomes -1/ENXIO (Documentation/i2c/fault-codes.rst).
 *
 * Kernel UAPI facts (include/uapi/linux/i2c-dev.h, include/uapi/linux/i2c.h): I2C_RETRIES 0x0701,
 * I2C_TIMEOUT 0x0702, I2C_SLAVE 0x0703, I2C_TENBIT 0x0704, I2C_FUNCS 0x0705, I2C_SLAVE_FORCE 0x0706,
 * I2C_RDWR 0x0707, I2C_PEC 0x0708, I2C_SMBUS 0x0720; I2C_RDWR takes struct i2c_rdwr_ioctl_data
 * { struct i2c_msg *msgs; __u32 nmsgs; } with at most I2C_RDWR_IOCTL_MAX_MSGS = 42 messages, each
 * struct i2c_msg { __u16 addr, flags, len; __u8 *buf; } with I2C_M_RD 0x0001, I2C_M_TEN 0x0010 and
 * I2C_M_RECV_LEN 0x0400; I2C_FUNC_I2C = 0x00000001. The kernel's i2c-dev rejects read/write counts
 * above 8192 with EINVAL; the protocol's limit is 4096.
 *
 * Build: gcc -shared -fPIC -O2 -Wall -Wextra -o native/testing/build/i2c_shim.so \
 *          native/testing/i2c_shim.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define OP_HELLO 0x48
#define OP_WRITE 0x57
#define OP_READ 0x52
#define ST_ACK 0
#define ST_NACK 1
#define MAX_XFER 4096
#define MAX_RDWR_MSGS 42 /* I2C_RDWR_IOCTL_MAX_MSGS */
#define MAX_FDS 256      /* redirected descriptors open at once, per process */

struct conn {
	dev_t dev;     /* identity of the socket, to notice a descriptor closed behind our back */
	ino_t ino;
	int refs;      /* descriptors pointing here (dup) */
	int bus;       /* N of /dev/i2c-N */
	int addr;      /* from I2C_SLAVE / I2C_SLAVE_FORCE; -1 until set */
	int lockfd;    /* <socket>.bus<N>.lock, opened on the first flock; -1 until then */
	pthread_mutex_t io; /* one request/reply exchange at a time */
};

struct slot {
	int fd;
	struct conn *c;
};

static struct slot slots[MAX_FDS];
static int nslots;            /* used entries (compacted) */
static volatile int nredirected; /* fast path: 0 means no descriptor is ours */
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- real libc ------------------------------------------------------------------------------ */

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef ssize_t (*rw_fn)(int, void *, size_t);
typedef ssize_t (*w_fn)(int, const void *, size_t);
typedef ssize_t (*readchk_fn)(int, void *, size_t, size_t);
typedef int (*close_fn)(int);
typedef int (*flock_fn)(int, int);
typedef int (*dup_fn)(int);
typedef int (*dup2_fn)(int, int);
typedef int (*dup3_fn)(int, int, int);
typedef int (*fcntl_fn)(int, int, ...);

static void *real(const char *name) {
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		fprintf(stderr, "i2c_shim: dlsym(%s) failed\n", name);
		abort();
	}
	return p;
}
#define REAL(type, name) \
	static type real_##name; \
	if (!real_##name) real_##name = (type)real(#name)

/* ---- table ---------------------------------------------------------------------------------- */

static struct conn *find_locked(int fd) {
	for (int i = 0; i < nslots; i++)
		if (slots[i].fd == fd) return slots[i].c;
	return NULL;
}

static struct conn *drop_locked(int fd);
static void close_conn(struct conn *c);

/*
 * The connection behind a redirected descriptor, or NULL. The socket's identity is checked, because
 * a descriptor can be closed without going through close() here (libuv closes with a raw syscall)
 * and its number reused for something else.
 */
static struct conn *lookup(int fd) {
	if (fd < 0 || __atomic_load_n(&nredirected, __ATOMIC_ACQUIRE) == 0) return NULL;
	pthread_mutex_lock(&table_mu);
	struct conn *c = find_locked(fd);
	struct stat st;
	if (c && (fstat(fd, &st) != 0 || st.st_dev != c->dev || st.st_ino != c->ino)) {
		struct conn *last = drop_locked(fd);
		c = NULL;
		pthread_mutex_unlock(&table_mu);
		if (last) close_conn(last);
		return NULL;
	}
	pthread_mutex_unlock(&table_mu);
	return c;
}

static void close_conn(struct conn *c) {
	if (c->lockfd >= 0) {
		REAL(close_fn, close);
		real_close(c->lockfd);
	}
	pthread_mutex_destroy(&c->io);
	free(c);
}

/* Removes fd from the table (table_mu held); returns the conn to free when it was the last ref. */
static struct conn *drop_locked(int fd) {
	for (int i = 0; i < nslots; i++) {
		if (slots[i].fd != fd) continue;
		struct conn *c = slots[i].c;
		slots[i] = slots[--nslots];
		__atomic_store_n(&nredirected, nslots, __ATOMIC_RELEASE);
		return --c->refs == 0 ? c : NULL;
	}
	return NULL;
}

/* Adds fd -> c (table_mu held). A previous entry for fd (closed behind our back) is replaced. */
static int add_locked(int fd, struct conn *c) {
	struct conn *old = drop_locked(fd);
	if (old) close_conn(old);
	if (nslots == MAX_FDS) {
		errno = EMFILE;
		return -1;
	}
	slots[nslots].fd = fd;
	slots[nslots].c = c;
	nslots++;
	c->refs++;
	__atomic_store_n(&nredirected, nslots, __ATOMIC_RELEASE);
	return 0;
}

/* ---- configuration -------------------------------------------------------------------------- */

/* Parses "/dev/i2c-N"; returns N or -1. */
static int bus_of(const char *path) {
	static const char prefix[] = "/dev/i2c-";
	if (!path || strncmp(path, prefix, sizeof prefix - 1) != 0) return -1;
	const char *p = path + sizeof prefix - 1;
	if (*p < '0' || *p > '9') return -1;
	long n = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || n > 100000) return -1;
		n = n * 10 + (*p - '0');
	}
	return (int)n;
}

/* True when `value` is in the comma-separated list `list` (numbers in C syntax: 96, 0x60). */
static int in_list(const char *list, long value) {
	const char *p = list;
	while (p && *p) {
		char *end;
		long v = strtol(p, &end, 0);
		if (end != p && v == value) return 1;
		p = strchr(p, ',');
		if (p) p++;
	}
	return 0;
}

static const char *socket_path(int bus) {
	const char *sock = getenv("KEYHOP_I2C_SOCKET");
	if (!sock || !*sock || bus < 0) return NULL;
	const char *buses = getenv("KEYHOP_I2C_BUSES");
	if (buses && *buses && !in_list(buses, bus)) return NULL;
	return sock;
}

/* ---- socket I/O ----------------------------------------------------------------------------- */

static int send_all(int fd, const void *buf, size_t n) {
	const unsigned char *p = buf;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t n) {
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t r = recv(fd, p, n, 0);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/*
 * One request and its reply. For READ, `data` receives exactly `len` bytes on ACK. Returns 0 on
 * ACK; -1 with errno ENXIO on NACK, EIO on a protocol error or a lost connection.
 */
static int exchange(int fd, struct conn *c, int op, int addr, const unsigned char *payload, size_t len,
		    unsigned char *data) {
	unsigned char hdr[4] = {(unsigned char)op, (unsigned char)addr, (unsigned char)(len & 0xff),
				(unsigned char)(len >> 8)};
	unsigned char rep[3];
	int rc = 0, err = 0;
	if (c) pthread_mutex_lock(&c->io);
	if (send_all(fd, hdr, sizeof hdr) < 0 || (op != OP_READ && len > 0 && send_all(fd, payload, len) < 0) ||
	    recv_all(fd, rep, sizeof rep) < 0) {
		rc = -1, err = EIO;
		goto out;
	}
	size_t rlen = (size_t)rep[1] | ((size_t)rep[2] << 8);
	if (rep[0] == ST_ACK) {
		size_t want = op == OP_READ ? len : 0;
		if (rlen != want) {
			rc = -1, err = EIO;
			goto out;
		}
		if (want > 0 && recv_all(fd, data, want) < 0) rc = -1, err = EIO;
	} else {
		/* Drain any data (the protocol says none) to stay in step. */
		unsigned char sink[64];
		while (rlen > 0) {
			size_t k = rlen < sizeof sink ? rlen : sizeof sink;
			if (recv_all(fd, sink, k) < 0) break;
			rlen -= k;
		}
		rc = -1, err = rep[0] == ST_NACK ? ENXIO : EIO;
	}
out:
	if (c) pthread_mutex_unlock(&c->io);
	if (rc < 0) errno = err;
	return rc;
}

/* Connects to the emulator for bus N; returns the socket or -1 (errno ENOENT as for no adapter). */
static int redirect_open(const char *sock, int bus, int flags) {
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (strlen(sock) >= sizeof sa.sun_path) {
		errno = ENOENT;
		return -1;
	}
	strcpy(sa.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | ((flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0), 0);
	if (fd < 0) return -1;
	unsigned char hello = (unsigned char)bus;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || exchange(fd, NULL, OP_HELLO, 0, &hello, 1, NULL) < 0) {
		REAL(close_fn, close);
		real_close(fd);
		errno = ENOENT;
		return -1;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		REAL(close_fn, close);
		real_close(fd);
		errno = ENOMEM;
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == 0) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
	}
	c->bus = bus;
	c->addr = -1;
	c->lockfd = -1;
	pthread_mutex_init(&c->io, NULL);
	pthread_mutex_lock(&table_mu);
	int rc = add_locked(fd, c);
	pthread_mutex_unlock(&table_mu);
	if (rc < 0) {
		int e = errno;
		close_conn(c);
		REAL(close_fn, close);
		real_close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* ---- open family ---------------------------------------------------------------------------- */

static int want_mode(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

int open(const char *path, int flags, ...) {
	mode_t mode = 0;
	if (want_mode(flags)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	int bus = bus_of(path);
	const char *sock = socket_path(bus);
	if (sock) return redirect_open(sock, bus, flags);
	REAL(open_fn, open);
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
	mode_t mode = 0;
	if (want_mode(flags)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	int bus = bus_of(path);
	const char *sock = socket_path(bus);
	if (sock) return redirect_open(sock, bus, flags);
	REAL(open_fn, open64);
	return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
	mode_t mode = 0;
	if (want_mode(flags)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	int bus = bus_of(path);
	const char *sock = socket_path(bus);
	if (sock) return redirect_open(sock, bus, flags);
	REAL(openat_fn, openat);
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
	mode_t mode = 0;
	if (want_mode(flags)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	int bus = bus_of(path);
	const char *sock = socket_path(bus);
	if (sock) return redirect_open(sock, bus, flags);
	REAL(openat_fn, openat64);
	return real_openat64(dirfd, path, flags, mode);
}

/* glibc's _FORTIFY_SOURCE variants of open without a mode argument. */
int __open_2(const char *path, int flags) {
	int bus = bus_of(path);
	const char *sock = socket_path(bus);
	if (sock) return redirect_open(sock, bus, flags);
	REAL(open2_fn, __open_2);
	return real___open_2(path, flags);
}

int __open64_2(const char *path, int flags) {
	int bus = bus_of(path);
	const char *sock = socket_path(bus);
	if (sock) return redirect_open(sock, bus, flags);
	REAL(open2_fn, __open64_2);
	return real___open64_2(path, flags);
}

/* ---- read / write --------------------------------------------------------------------------- */

static ssize_t i2c_read(int fd, struct conn *c, void *buf, size_t n) {
	if (n == 0) return 0;
	if (n > MAX_XFER || c->addr < 0) {
		errno = EINVAL;
		return -1;
	}
	if (exchange(fd, c, OP_READ, c->addr, NULL, n, buf) < 0) return -1;
	return (ssize_t)n;
}

static ssize_t i2c_write(int fd, struct conn *c, const void *buf, size_t n) {
	if (n == 0) return 0;
	if (n > MAX_XFER || c->addr < 0) {
		errno = EINVAL;
		return -1;
	}
	if (exchange(fd, c, OP_WRITE, c->addr, buf, n, NULL) < 0) return -1;
	return (ssize_t)n;
}

ssize_t read(int fd, void *buf, size_t n) {
	struct conn *c = lookup(fd);
	if (c) return i2c_read(fd, c, buf, n);
	REAL(rw_fn, read);
	return real_read(fd, buf, n);
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen) {
	struct conn *c = lookup(fd);
	if (c) {
		if (n > buflen) abort(); /* what glibc's __chk_fail does, minus the message */
		return i2c_read(fd, c, buf, n);
	}
	REAL(readchk_fn, __read_chk);
	return real___read_chk(fd, buf, n, buflen);
}

ssize_t write(int fd, const void *buf, size_t n) {
	struct conn *c = lookup(fd);
	if (c) return i2c_write(fd, c, buf, n);
	REAL(w_fn, write);
	return real_write(fd, buf, n);
}

/* ---- ioctl ---------------------------------------------------------------------------------- */

static int i2c_rdwr(int fd, struct conn *c, struct i2c_rdwr_ioctl_data *d) {
	if (!d || d->nmsgs > MAX_RDWR_MSGS || (d->nmsgs > 0 && !d->msgs)) {
		errno = EINVAL;
		return -1;
	}
	for (unsigned i = 0; i < d->nmsgs; i++) {
		const struct i2c_msg *m = &d->msgs[i];
		if ((m->flags & (I2C_M_TEN | I2C_M_RECV_LEN)) || m->addr > 0x7f || m->len > MAX_XFER || !m->buf) {
			errno = EINVAL;
			return -1;
		}
		if (m->len == 0) { /* an address-only probe: the protocol has no zero-length frame */
			errno = EOPNOTSUPP;
			return -1;
		}
	}
	for (unsigned i = 0; i < d->nmsgs; i++) {
		struct i2c_msg *m = &d->msgs[i];
		int rc;
		if (m->flags & I2C_M_RD) {
			rc = exchange(fd, c, OP_READ, m->addr, NULL, m->len, m->buf);
		} else {
			rc = exchange(fd, c, OP_WRITE, m->addr, m->buf, m->len, NULL);
		}
		if (rc < 0) return -1; /* a NACK stops the sequence */
	}
	return (int)d->nmsgs;
}

static int i2c_ioctl(int fd, struct conn *c, unsigned long req, void *arg) {
	unsigned long v = (unsigned long)arg;
	switch (req) {
	case I2C_SLAVE:
	case I2C_SLAVE_FORCE:
		if (v > 0x7f) {
			errno = EINVAL;
			return -1;
		}
		if (req == I2C_SLAVE && in_list(getenv("KEYHOP_I2C_BUSY"), (long)v)) {
			errno = EBUSY;
			return -1;
		}
		c->addr = (int)v;
		return 0;
	case I2C_FUNCS:
		if (!arg) {
			errno = EFAULT;
			return -1;
		}
		*(unsigned long *)arg = I2C_FUNC_I2C;
		return 0;
	case I2C_RDWR:
		return i2c_rdwr(fd, c, (struct i2c_rdwr_ioctl_data *)arg);
	case I2C_TIMEOUT:
	case I2C_RETRIES:
		return 0;
	case I2C_TENBIT:
	case I2C_PEC:
		if (v != 0) {
			errno = EOPNOTSUPP;
			return -1;
		}
		return 0;
	case I2C_SMBUS:
		errno = EOPNOTSUPP; /* I2C_FUNCS reports no SMBus emulation */
		return -1;
	default:
		return -2; /* not an i2c-dev request: let the socket answer (FIOCLEX, FIONBIO, ...) */
	}
}

/* glibc: int ioctl(int, unsigned long, ...); the argument is one pointer-sized word. */
int ioctl(int fd, unsigned long req, ...) {
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	struct conn *c = lookup(fd);
	if (c) {
		int rc = i2c_ioctl(fd, c, req, arg);
		if (rc != -2) return rc;
	}
	REAL(ioctl_fn, ioctl);
	return real_ioctl(fd, req, arg);
}

/* ---- flock ---------------------------------------------------------------------------------- */

int flock(int fd, int op) {
	REAL(flock_fn, flock);
	struct conn *c = lookup(fd);
	if (!c) return real_flock(fd, op);
	pthread_mutex_lock(&c->io);
	if (c->lockfd < 0) {
		const char *sock = getenv("KEYHOP_I2C_SOCKET");
		char path[4096];
		if (!sock || snprintf(path, sizeof path, "%s.bus%d.lock", sock, c->bus) >= (int)sizeof path) {
			pthread_mutex_unlock(&c->io);
			errno = ENOLCK;
			return -1;
		}
		REAL(open_fn, open);
		c->lockfd = real_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	}
	int lockfd = c->lockfd;
	pthread_mutex_unlock(&c->io);
	if (lockfd < 0) {
		errno = ENOLCK;
		return -1;
	}
	/* Outside the mutex: a blocking LOCK_EX must not stop other threads using this descriptor. */
	return real_flock(lockfd, op);
}

/* ---- close / dup ---------------------------------------------------------------------------- */

int close(int fd) {
	REAL(close_fn, close);
	if (fd >= 0 && __atomic_load_n(&nredirected, __ATOMIC_ACQUIRE) != 0) {
		pthread_mutex_lock(&table_mu);
		struct conn *last = drop_locked(fd);
		pthread_mutex_unlock(&table_mu);
		if (last) close_conn(last);
	}
	return real_close(fd);
}

/* Records newfd as another descriptor of oldfd's connection, if oldfd is ours. */
static int track_dup(int oldfd, int newfd) {
	if (newfd < 0 || oldfd == newfd) return newfd;
	pthread_mutex_lock(&table_mu);
	struct conn *c = find_locked(oldfd);
	if (c) {
		add_locked(newfd, c);
	} else {
		struct conn *last = drop_locked(newfd); /* dup2 over one of ours closed it */
		if (last) {
			pthread_mutex_unlock(&table_mu);
			close_conn(last);
			return newfd;
		}
	}
	pthread_mutex_unlock(&table_mu);
	return newfd;
}

int dup(int fd) {
	REAL(dup_fn, dup);
	return track_dup(fd, real_dup(fd));
}

int dup2(int fd, int fd2) {
	REAL(dup2_fn, dup2);
	return track_dup(fd, real_dup2(fd, fd2));
}

int dup3(int fd, int fd2, int flags) {
	REAL(dup3_fn, dup3);
	return track_dup(fd, real_dup3(fd, fd2, flags));
}

/*
 * fcntl: only F_DUPFD/F_DUPFD_CLOEXEC need tracking; the third argument is passed on as one
 * pointer-sized word, which covers int and pointer arguments on the ABIs glibc supports.
 * glibc >= 2.28 also exports fcntl64 (what 32-bit programs built with _FILE_OFFSET_BITS=64 call).
 */
static int fcntl_common(fcntl_fn realfn, int fd, int cmd, void *arg) {
	int r = realfn(fd, cmd, arg);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) return track_dup(fd, r);
	return r;
}

int fcntl(int fd, int cmd, ...) {
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	REAL(fcntl_fn, fcntl);
	return fcntl_common(real_fcntl, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	static fcntl_fn real_fcntl64;
	if (!real_fcntl64) {
		real_fcntl64 = (fcntl_fn)dlsym(RTLD_NEXT, "fcntl64");
		if (!real_fcntl64) real_fcntl64 = (fcntl_fn)real("fcntl");
	}
	return fcntl_common(real_fcntl64, fd, cmd, arg);
}
