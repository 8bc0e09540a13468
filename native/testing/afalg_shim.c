/*
 * afalg_shim.c: LD_PRELOAD library that emulates the few AF_ALG (kernel crypto API) socket calls
 * BlueZ's btvirt makes, using OpenSSL 3 in user space.
 *
 * Why: btvirt (bluez-test-tools) creates every virtual LE controller with bt_crypto_new()
 * (src/shared/crypto.c), which opens AF_ALG sockets for "ecb(aes)" and "cmac(aes)". Kernels built
 * without CONFIG_CRYPTO_USER_API_SKCIPHER/HASH (our CI VMs) answer socket(AF_ALG) with EAFNOSUPPORT,
 * btdev_create() fails and btvirt drops every client of /tmp/bt-server-le at once. With this shim
 * preloaded the controllers come up. Test rig only: never ship or preload it anywhere else.
 *
 * Model: each emulated AF_ALG fd is one end of a socketpair. bind() picks the algorithm,
 * setsockopt(ALG_SET_KEY) stores the key, accept() makes an operation fd, and sendmsg()/send()
 * on it computes the result and writes it into the other end, where btvirt's plain read() finds
 * it. Scope is exactly what BlueZ 5.66 does: one-shot AES-ECB encryption (ALG_OP_ENCRYPT) and
 * one-shot AES-CMAC per operation fd; anything else fails with an errno instead of a wrong answer.
 * Not thread-safe (btvirt is single-threaded); fds >= MAXFD are passed through untouched.
 *
 * Build: gcc -shared -fPIC -O2 -Wall -Wextra -o afalg_shim.so afalg_shim.c -ldl -lcrypto
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/if_alg.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef SOL_ALG
#define SOL_ALG 279
#endif
#define MAXFD 4096
#define MAXMSG 4096

enum kind { K_NONE = 0, K_TFM, K_OP };
enum alg { A_NONE = 0, A_ECB_AES, A_CMAC_AES };
struct alg_fd {
	enum kind kind;
	enum alg alg;
	unsigned char key[32];
	size_t keylen;
	int peer; /* the socketpair end we write results into */
};
static struct alg_fd tab[MAXFD];

static int (*real_socket)(int, int, int);
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static int (*real_close)(int);
#define LOAD(name) \
	do { \
		if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name); \
	} while (0)

static int is(int fd, enum kind kind) { return fd >= 0 && fd < MAXFD && tab[fd].kind == kind; }

/* Returns the fd handed to the caller; *peer gets the end results are written into. */
static int new_pair(int *peer) {
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
	if (sv[0] >= MAXFD || sv[1] >= MAXFD) {
		LOAD(close);
		real_close(sv[0]);
		real_close(sv[1]);
		errno = EMFILE;
		return -1;
	}
	*peer = sv[1];
	return sv[0];
}

int socket(int domain, int type, int proto) {
	LOAD(socket);
	if (domain != AF_ALG) return real_socket(domain, type, proto);
	int peer, fd = new_pair(&peer);
	if (fd < 0) return -1;
	memset(&tab[fd], 0, sizeof tab[fd]);
	tab[fd].kind = K_TFM;
	tab[fd].peer = peer;
	return fd;
}

int bind(int fd, const struct sockaddr *sa, socklen_t len) {
	LOAD(bind);
	if (!is(fd, K_TFM)) return real_bind(fd, sa, len);
	const struct sockaddr_alg *a = (const struct sockaddr_alg *)sa;
	if (len < sizeof *a) {
		errno = EINVAL;
		return -1;
	}
	const char *type = (const char *)a->salg_type, *name = (const char *)a->salg_name;
	if (!strncmp(type, "skcipher", sizeof a->salg_type) && !strncmp(name, "ecb(aes)", sizeof a->salg_name))
		tab[fd].alg = A_ECB_AES;
	else if (!strncmp(type, "hash", sizeof a->salg_type) && !strncmp(name, "cmac(aes)", sizeof a->salg_name))
		tab[fd].alg = A_CMAC_AES;
	else {
		errno = ENOENT; /* what the kernel says for an unknown algorithm */
		return -1;
	}
	return 0;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
	LOAD(setsockopt);
	if (!is(fd, K_TFM)) return real_setsockopt(fd, level, name, val, len);
	if (level != SOL_ALG || name != ALG_SET_KEY || (len != 16 && len != 24 && len != 32)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(tab[fd].key, val, len);
	tab[fd].keylen = len;
	return 0;
}

static int accept_op(int fd) {
	if (tab[fd].alg == A_NONE || tab[fd].keylen == 0) {
		errno = EINVAL;
		return -1;
	}
	int peer, op = new_pair(&peer);
	if (op < 0) return -1;
	tab[op] = tab[fd];
	tab[op].kind = K_OP;
	tab[op].peer = peer;
	return op;
}

int accept(int fd, struct sockaddr *sa, socklen_t *len) {
	LOAD(accept);
	return is(fd, K_TFM) ? accept_op(fd) : real_accept(fd, sa, len);
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags) {
	LOAD(accept4);
	return is(fd, K_TFM) ? accept_op(fd) : real_accept4(fd, sa, len, flags);
}

static int aes_ecb(const struct alg_fd *t, const unsigned char *in, size_t n, unsigned char *out) {
	const EVP_CIPHER *c = t->keylen == 32 ? EVP_aes_256_ecb() : t->keylen == 24 ? EVP_aes_192_ecb() : EVP_aes_128_ecb();
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0;
	int ok = ctx && EVP_EncryptInit_ex(ctx, c, NULL, t->key, NULL) && EVP_CIPHER_CTX_set_padding(ctx, 0) &&
		 EVP_EncryptUpdate(ctx, out, &l1, in, (int)n) && EVP_EncryptFinal_ex(ctx, out + l1, &l2) &&
		 (size_t)(l1 + l2) == n;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? (int)n : -1;
}

static int aes_cmac(const struct alg_fd *t, const unsigned char *in, size_t n, unsigned char *out) {
	char *cipher = t->keylen == 32 ? "AES-256-CBC" : t->keylen == 24 ? "AES-192-CBC" : "AES-128-CBC";
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0), OSSL_PARAM_construct_end()};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	size_t outlen = 0;
	int ok = ctx && EVP_MAC_init(ctx, t->key, t->keylen, params) && EVP_MAC_update(ctx, in, n) &&
		 EVP_MAC_final(ctx, out, &outlen, 16);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ok ? (int)outlen : -1;
}

/* Computes the result for one operation and queues it for the caller's read(fd). */
static ssize_t compute(int fd, const unsigned char *in, size_t n) {
	unsigned char out[MAXMSG];
	int outlen;
	if (tab[fd].alg == A_ECB_AES) {
		if (n % 16) {
			errno = EINVAL;
			return -1;
		}
		outlen = aes_ecb(&tab[fd], in, n, out);
	} else {
		outlen = aes_cmac(&tab[fd], in, n, out);
	}
	if (outlen < 0) {
		errno = EIO;
		return -1;
	}
	if (write(tab[fd].peer, out, (size_t)outlen) != outlen) return -1;
	return (ssize_t)n;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
	LOAD(sendmsg);
	if (!is(fd, K_OP)) return real_sendmsg(fd, msg, flags);
	if (flags & MSG_MORE) { /* multi-part messages: BlueZ never sends them */
		errno = EOPNOTSUPP;
		return -1;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		if (c->cmsg_level != SOL_ALG || c->cmsg_type != ALG_SET_OP) continue;
		__u32 op;
		memcpy(&op, CMSG_DATA(c), sizeof op);
		if (op != ALG_OP_ENCRYPT) { /* BlueZ only encrypts */
			errno = EOPNOTSUPP;
			return -1;
		}
	}
	unsigned char buf[MAXMSG];
	size_t n = 0;
	for (size_t i = 0; i < msg->msg_iovlen; i++) {
		if (msg->msg_iov[i].iov_len > sizeof buf - n) {
			errno = EMSGSIZE;
			return -1;
		}
		memcpy(buf + n, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
		n += msg->msg_iov[i].iov_len;
	}
	return compute(fd, buf, n);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
	LOAD(send);
	if (!is(fd, K_OP)) return real_send(fd, buf, n, flags);
	if ((flags & MSG_MORE) || n > MAXMSG) {
		errno = (flags & MSG_MORE) ? EOPNOTSUPP : EMSGSIZE;
		return -1;
	}
	return compute(fd, buf, n);
}

int close(int fd) {
	LOAD(close);
	if (fd >= 0 && fd < MAXFD && tab[fd].kind != K_NONE) {
		real_close(tab[fd].peer);
		memset(&tab[fd], 0, sizeof tab[fd]);
	}
	return real_close(fd);
}
