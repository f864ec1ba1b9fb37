/*
 * wsproto.h - the RFC 6455 pieces both sides of the WebSocket benchmark
 * need: the `ws` scenario's client (cmd_ws.c) and `serve ws` (serve_ws.c).
 * Frame heads (writing, and reading them a byte at a time if need be),
 * the checks every endpoint makes on a received head, masking, and the
 * handshake's Sec-WebSocket-Accept. Nothing here reads sockets, allocates
 * or keeps pointers; bench/ stays apart from the daemon's own ws/ code.
 */
#ifndef CS_BENCH_WSPROTO_H
#define CS_BENCH_WSPROTO_H

#include <stddef.h>
#include <stdint.h>

enum cs__ws_opcode {
	CS__WS_CONT = 0x0,
	CS__WS_TEXT = 0x1,
	CS__WS_BINARY = 0x2,
	CS__WS_CLOSE = 0x8,
	CS__WS_PING = 0x9,
	CS__WS_PONG = 0xA,
};

/* The longest frame head: 2 bytes, an 8-byte length, a 4-byte mask. */
#define CS__WS_HEAD_MAX 14

/* The longest control frame payload. */
#define CS__WS_CONTROL_MAX 125

/* Sec-WebSocket-Accept: 28 base64 characters. */
#define CS__WS_ACCEPT_LEN 28

/* A frame head, as read. */
struct cs__ws_frame {
	int fin;
	int rsv;    /* the three RSV bits, 0 unless an extension says otherwise */
	int opcode;
	int masked;
	uint64_t len;
	unsigned char mask[4];
};

/* Reads a head that may arrive in pieces. Zero it to start; it is ready
 * for the next head once one is complete. */
struct cs__ws_reader {
	unsigned char buf[CS__WS_HEAD_MAX];
	unsigned have;
};

/* Write the head of a frame of len payload bytes into out (at least
 * CS__WS_HEAD_MAX bytes); mask NULL for an unmasked (server) frame.
 * Returns the head's length, 2 to 14. */
size_t cs__ws_head(unsigned char *out, int fin, int opcode, uint64_t len,
		   const unsigned char *mask);

/* Take bytes of a head from p[0, n). Returns how many were taken; once
 * the head is complete, *f is filled and *done set (and the reader is
 * ready for the next head). Returns -1 when the head cannot be a frame's:
 * a 64-bit length with its top bit set. */
long cs__ws_read_head(struct cs__ws_reader *r, const unsigned char *p, size_t n,
		      struct cs__ws_frame *f, int *done);

/* What is wrong with a received head, as the RFC has every endpoint check
 * it (RSV bits, unknown opcodes, control frames over 125 bytes or
 * fragmented, client frames unmasked and server frames masked), or NULL
 * when it is fine. from_client: the head came from a client. */
const char *cs__ws_check(const struct cs__ws_frame *f, int from_client);

/* dst[i] = src[i] ^ mask[(offset + i) % 4] for i < n; dst may be src.
 * offset: the position of src[0] in the frame's payload. */
void cs__ws_mask(unsigned char *dst, const unsigned char *src, size_t n,
		 const unsigned char mask[4], uint64_t offset);

/* The Sec-WebSocket-Accept for a Sec-WebSocket-Key (key[0, klen)) into
 * out: CS__WS_ACCEPT_LEN characters and a NUL. Returns 0, or -1 when
 * SHA-1 failed. */
int cs__ws_accept(const char *key, size_t klen, char *out);

/* Base64 (RFC 4648, padded) of in[0, n) into out, NUL-terminated; out
 * needs 4 * ((n + 2) / 3) + 1 bytes. Returns the length written. */
size_t cs__ws_base64(const unsigned char *in, size_t n, char *out);

#endif
