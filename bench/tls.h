/*
 * tls.h - the client side of TLS for cosockd-bench (`rr --tls`,
 * `handshake`), on wolfSSL's native API with its own fd-based I/O over our
 * non-blocking sockets.
 *
 * What wolfSSL says is turned into what the scenarios already handle for
 * plain sockets: a handshake step is done, to be tried again when the
 * socket reports an event, or failed; reads and writes look like recv()
 * and send(): a count, 0 at the end of the stream (the server's
 * close_notify or a bare EOF), or -1 with errno set to EAGAIN (wolfSSL
 * waits for the socket, whichever way), the socket's own errno (ECONNRESET,
 * EPIPE), or EPROTO for a TLS failure, described by cs__tls_why().
 *
 * wolfSSL's types are only named here, so the other files need none of its
 * headers.
 */
#ifndef CS_BENCH_TLS_H
#define CS_BENCH_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct WOLFSSL;
struct WOLFSSL_CTX;
struct WOLFSSL_SESSION;

/* The run's client context, shared by every worker thread: TLS 1.2 or
 * 1.3, whichever the server prefers. Without ca_file the server's
 * certificate is not checked; with it, its chain must lead to a
 * certificate in ca_file (the name is not checked: targets are
 * addresses). A CA file that does not load is a usage error (exit 2). */
struct WOLFSSL_CTX *cs__tls_ctx_new(const char *ca_file);
void cs__tls_ctx_free(struct WOLFSSL_CTX *ctx);

/* A thread that made TLS connections is about to end: free what wolfSSL
 * keeps per thread (a cache of ECC points, with this build's FP_ECC). */
void cs__tls_thread_end(void);

/* A session on the connected socket fd; resume, when not NULL, is offered
 * to the server for resumption. NULL when out of memory. */
struct WOLFSSL *cs__tls_new(struct WOLFSSL_CTX *ctx, int fd, struct WOLFSSL_SESSION *resume);
void cs__tls_free(struct WOLFSSL *ssl);

/* One step of the handshake: 1 done, 0 again once the socket reports an
 * event, -1 failed (errno as above). On a blocking socket a step runs to
 * the end, so 0 means its SO_RCVTIMEO/SO_SNDTIMEO ran out. */
int cs__tls_handshake(struct WOLFSSL *ssl);

ssize_t cs__tls_recv(struct WOLFSSL *ssl, void *buf, size_t len);
ssize_t cs__tls_send(struct WOLFSSL *ssl, const void *buf, size_t len);

/* Send close_notify, once, without waiting for anything. */
void cs__tls_close_notify(struct WOLFSSL *ssl);

/* Did the handshake resume a session? */
int cs__tls_resumed(struct WOLFSSL *ssl);

/* The session to offer next time (tickets the server sent since the
 * handshake included), or NULL; free with cs__tls_session_free(). */
struct WOLFSSL_SESSION *cs__tls_session(struct WOLFSSL *ssl);
void cs__tls_session_free(struct WOLFSSL_SESSION *s);

/* What the handshake settled on, e.g. "TLSv1.3 TLS_AES_128_GCM_SHA256
 * X25519", into buf. */
void cs__tls_describe(struct WOLFSSL *ssl, char *buf, size_t len);

/* Why this thread's last TLS call failed with EPROTO. */
const char *cs__tls_why(void);

#endif
