/*
 * wsproto.c - RFC 6455 frame heads, masking and the handshake's accept
 * value for cosockd-bench (see wsproto.h). SHA-1 is wolfSSL's, which the
 * load generator links for TLS already.
 */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha.h>

#include <string.h>

#include "wsproto.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

size_t cs__ws_head(unsigned char *out, int fin, int opcode, uint64_t len,
		   const unsigned char *mask)
{
	size_t n = 2;

	out[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
	out[1] = mask ? 0x80 : 0;
	if (len < 126) {
		out[1] |= (unsigned char)len;
	} else if (len <= 0xffff) {
		out[1] |= 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		n = 4;
	} else {
		out[1] |= 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

/* Bytes the head in buf needs in all, known once its first two are in. */
static unsigned head_size(const unsigned char *buf)
{
	unsigned len7 = buf[1] & 0x7f;
	unsigned n = 2 + ((buf[1] & 0x80) ? 4 : 0);

	if (len7 == 126)
		n += 2;
	else if (len7 == 127)
		n += 8;
	return n;
}

long cs__ws_read_head(struct cs__ws_reader *r, const unsigned char *p, size_t n,
		      struct cs__ws_frame *f, int *done)
{
	size_t taken = 0;

	*done = 0;
	while (taken < n) {
		unsigned need = r->have < 2 ? 2 : head_size(r->buf);
		if (r->have == need)
			break;
		size_t k = need - r->have;
		if (k > n - taken)
			k = n - taken;
		memcpy(r->buf + r->have, p + taken, k);
		r->have += (unsigned)k;
		taken += k;
	}
	if (r->have < 2 || r->have < head_size(r->buf))
		return (long)taken;

	const unsigned char *b = r->buf;
	unsigned len7 = b[1] & 0x7f, pos = 2;
	f->fin = !!(b[0] & 0x80);
	f->rsv = (b[0] >> 4) & 0x07;
	f->opcode = b[0] & 0x0f;
	f->masked = !!(b[1] & 0x80);
	if (len7 < 126) {
		f->len = len7;
	} else if (len7 == 126) {
		f->len = (uint64_t)b[2] << 8 | b[3];
		pos = 4;
	} else {
		f->len = 0;
		for (int i = 0; i < 8; i++)
			f->len = f->len << 8 | b[2 + i];
		pos = 10;
		if (f->len >> 63)
			return -1;
	}
	if (f->masked)
		memcpy(f->mask, b + pos, 4);
	r->have = 0;
	*done = 1;
	return (long)taken;
}

const char *cs__ws_check(const struct cs__ws_frame *f, int from_client)
{
	if (f->rsv)
		return "RSV bits set with no extension";
	switch (f->opcode) {
	case CS__WS_CONT:
	case CS__WS_TEXT:
	case CS__WS_BINARY:
		break;
	case CS__WS_CLOSE:
	case CS__WS_PING:
	case CS__WS_PONG:
		if (!f->fin)
			return "fragmented control frame";
		if (f->len > CS__WS_CONTROL_MAX)
			return "control frame over 125 bytes";
		if (f->opcode == CS__WS_CLOSE && f->len == 1)
			return "close frame with a 1-byte payload";
		break;
	default:
		return "reserved opcode";
	}
	if (from_client && !f->masked)
		return "unmasked frame from a client";
	if (!from_client && f->masked)
		return "masked frame from a server";
	return NULL;
}

void cs__ws_mask(unsigned char *dst, const unsigned char *src, size_t n,
		 const unsigned char mask[4], uint64_t offset)
{
	unsigned char m[8];
	uint64_t m8;
	size_t i = 0;

	for (int k = 0; k < 8; k++)
		m[k] = mask[(offset + (uint64_t)k) % 4];
	memcpy(&m8, m, 8);
	/* Eight bytes at a time: m repeats every four, so the same m8 fits
	 * every step of eight. */
	for (; i + 8 <= n; i += 8) {
		uint64_t v;
		memcpy(&v, src + i, 8);
		v ^= m8;
		memcpy(dst + i, &v, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ m[i % 8];
}

size_t cs__ws_base64(const unsigned char *in, size_t n, char *out)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = abc[(v >> 18) & 63];
		out[o++] = abc[(v >> 12) & 63];
		out[o++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? abc[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

int cs__ws_accept(const char *key, size_t klen, char *out)
{
	wc_Sha sha;
	unsigned char digest[WC_SHA_DIGEST_SIZE];
	int ok;

	if (wc_InitSha(&sha) != 0)
		return -1;
	ok = wc_ShaUpdate(&sha, (const byte *)key, (word32)klen) == 0 &&
	     wc_ShaUpdate(&sha, (const byte *)ws_guid, sizeof(ws_guid) - 1) == 0 &&
	     wc_ShaFinal(&sha, digest) == 0;
	wc_ShaFree(&sha);
	if (!ok)
		return -1;
	cs__ws_base64(digest, sizeof(digest), out);
	return 0;
}
