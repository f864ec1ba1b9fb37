/*
 * wsframe.c - the WebSocket protocol (RFC 6455) without I/O: UTF-8
 * validation, the incremental frame receiver, frame headers, masking and
 * the handshake's accept key.
 *
 * The receiver takes whatever bytes arrived, however they are split, and
 * reports one event per call, so a caller can hand payload to its reader
 * without copying it: data events point into the caller's buffer. It
 * checks every rule of the RFC a receiver can check, reporting the close
 * code to answer with, because a peer that breaks one is either broken or
 * probing, and guessing what it meant is how implementations disagree.
 */
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha.h>

#include "wsframe.h"

/* ---- UTF-8 --------------------------------------------------------------- */

/*
 * state: 0 between characters; otherwise the number of continuation bytes
 * still due in bits 0-7, and the range the next one must fall in (bits
 * 8-15 and 16-23): narrower than 0x80-0xBF right after the lead bytes
 * whose next byte decides an overlong form, a surrogate or a code point
 * past U+10FFFF.
 */
#define UTF8_STATE(due, lo, hi) ((uint32_t)(due) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

bool cs_utf8_feed(struct cs_utf8 *u, const uint8_t *p, size_t len)
{
	uint32_t st = u->state;

	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];

		if (st == 0) {
			if (c < 0x80)
				continue;
			if (c >= 0xC2 && c <= 0xDF)
				st = UTF8_STATE(1, 0x80, 0xBF);
			else if (c == 0xE0)
				st = UTF8_STATE(2, 0xA0, 0xBF);
			else if (c == 0xED)
				st = UTF8_STATE(2, 0x80, 0x9F);
			else if (c >= 0xE1 && c <= 0xEF)
				st = UTF8_STATE(2, 0x80, 0xBF);
			else if (c == 0xF0)
				st = UTF8_STATE(3, 0x90, 0xBF);
			else if (c == 0xF4)
				st = UTF8_STATE(3, 0x80, 0x8F);
			else if (c >= 0xF1 && c <= 0xF3)
				st = UTF8_STATE(3, 0x80, 0xBF);
			else
				goto bad;
			continue;
		}
		if (c < ((st >> 8) & 0xFF) || c > ((st >> 16) & 0xFF))
			goto bad;
		st = (st & 0xFF) == 1 ? 0 : UTF8_STATE((st & 0xFF) - 1, 0x80, 0xBF);
	}
	u->state = st;
	return true;
bad:
	u->state = st;
	return false;
}

/* ---- masking and headers ------------------------------------------------- */

void cs_ws_mask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset)
{
	size_t i = 0;
	/* byte by byte up to an 8-byte boundary of p, then 8 bytes at a time
	 * with the key rotated to match, then the tail */
	for (; i < len && ((uintptr_t)(p + i) & 7); i++)
		p[i] ^= mask[(offset + i) & 3];
	if (len - i >= 8) {
		uint8_t k[8];
		for (int j = 0; j < 8; j++)
			k[j] = mask[(offset + i + (size_t)j) & 3];
		uint64_t key;
		memcpy(&key, k, 8);
		for (; len - i >= 8; i += 8) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			w ^= key;
			memcpy(p + i, &w, 8);
		}
	}
	for (; i < len; i++)
		p[i] ^= mask[(offset + i) & 3];
}

size_t cs_ws_header(uint8_t out[CS_WS_MAX_HEADER], uint8_t opcode, bool fin, uint64_t len,
		    const uint8_t *mask)
{
	size_t n = 2;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
	if (len < 126) {
		out[1] = (uint8_t)len;
	} else if (len <= 0xFFFF) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		out[1] |= 0x80;
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

/* ---- the accept key ------------------------------------------------------ */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static bool is_b64(char c)
{
	return c && strchr(b64_alphabet, c) != NULL;
}

int cs_ws_accept_key(const char *key, size_t key_len, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	uint8_t digest[WC_SHA_DIGEST_SIZE];
	wc_Sha sha;
	int r;

	/* 16 bytes are 22 base64 characters and "==". */
	if (key_len != 24 || key[22] != '=' || key[23] != '=')
		return -1;
	for (size_t i = 0; i < 22; i++)
		if (!is_b64(key[i]))
			return -1;

	if (wc_InitSha(&sha) != 0)
		return -1;
	r = wc_ShaUpdate(&sha, (const uint8_t *)key, (uint32_t)key_len);
	if (r == 0)
		r = wc_ShaUpdate(&sha, (const uint8_t *)guid, sizeof(guid) - 1);
	if (r == 0)
		r = wc_ShaFinal(&sha, digest);
	wc_ShaFree(&sha);
	if (r != 0)
		return -1;

	/* 20 bytes: six groups of three, then two bytes and one '='. */
	size_t o = 0;
	for (size_t i = 0; i < sizeof(digest); i += 3) {
		uint32_t v = (uint32_t)digest[i] << 16;

		if (i + 1 < sizeof(digest))
			v |= (uint32_t)digest[i + 1] << 8;
		if (i + 2 < sizeof(digest))
			v |= digest[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < sizeof(digest) ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < sizeof(digest) ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return 0;
}

/* ---- the receiver -------------------------------------------------------- */

void cs_ws_rx_init(struct cs_ws_rx *rx, bool server, uint64_t max_frame)
{
	memset(rx, 0, sizeof(*rx));
	rx->server = server;
	rx->max_frame = max_frame;
}

static bool is_control(uint8_t opcode)
{
	return opcode & 0x08;
}

/* Record a violation; it is the answer to this call and every later one. */
static size_t fail(struct cs_ws_rx *rx, size_t len, struct cs_ws_event *ev, uint16_t code)
{
	rx->failed = true;
	rx->error_code = code;
	ev->type = CS_WS_EV_ERROR;
	ev->code = code;
	return len;
}

/* A close code a peer may send (RFC 6455 7.4). */
static bool close_code_ok(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
	       (code >= 3000 && code <= 4999);
}

/* The header bytes needed so far: 2, then what the first two announce. */
static size_t header_size(const struct cs_ws_rx *rx)
{
	size_t n = 2;
	uint8_t len7 = rx->hdr[1] & 0x7F;

	if (len7 == 126)
		n += 2;
	else if (len7 == 127)
		n += 8;
	if (rx->hdr[1] & 0x80)
		n += 4;
	return n;
}

/* Check the first two header bytes: 0 or the close code to fail with. */
static uint16_t check_start(struct cs_ws_rx *rx)
{
	uint8_t b0 = rx->hdr[0], b1 = rx->hdr[1], op = b0 & 0x0F;
	bool fin = b0 & 0x80, masked = b1 & 0x80;

	if (b0 & 0x70)
		return CS_WS_CLOSE_PROTOCOL;
	if (is_control(op)) {
		if (op != CS_WS_OP_CLOSE && op != CS_WS_OP_PING && op != CS_WS_OP_PONG)
			return CS_WS_CLOSE_PROTOCOL;
		if (!fin || (b1 & 0x7F) > CS_WS_MAX_CONTROL)
			return CS_WS_CLOSE_PROTOCOL;
	} else {
		if (op != CS_WS_OP_CONT && op != CS_WS_OP_TEXT && op != CS_WS_OP_BINARY)
			return CS_WS_CLOSE_PROTOCOL;
		if (op == CS_WS_OP_CONT && !rx->in_message)
			return CS_WS_CLOSE_PROTOCOL;
		if (op != CS_WS_OP_CONT && rx->in_message)
			return CS_WS_CLOSE_PROTOCOL;
	}
	if (masked != rx->server)
		return CS_WS_CLOSE_PROTOCOL;
	return 0;
}

/* The whole header is in rx->hdr: check the length and start the frame. */
static uint16_t start_frame(struct cs_ws_rx *rx)
{
	uint8_t len7 = rx->hdr[1] & 0x7F;
	uint64_t len = len7;
	size_t at = 2;

	if (len7 == 126) {
		len = (uint64_t)rx->hdr[2] << 8 | rx->hdr[3];
		if (len < 126)
			return CS_WS_CLOSE_PROTOCOL;
		at = 4;
	} else if (len7 == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | rx->hdr[2 + i];
		if (len >> 63 || len <= 0xFFFF)
			return CS_WS_CLOSE_PROTOCOL;
		at = 10;
	}
	rx->opcode = rx->hdr[0] & 0x0F;
	rx->fin = rx->hdr[0] & 0x80;
	rx->masked = rx->hdr[1] & 0x80;
	if (rx->masked)
		memcpy(rx->mask, rx->hdr + at, 4);
	if (!is_control(rx->opcode)) {
		if (len > rx->max_frame)
			return CS_WS_CLOSE_TOO_BIG;
		if (rx->opcode != CS_WS_OP_CONT) {
			rx->message_text = rx->opcode == CS_WS_OP_TEXT;
			rx->message_done = 0;
			rx->utf8.state = 0;
		}
		rx->in_message = !rx->fin;
	}
	rx->frame_len = len;
	rx->frame_done = 0;
	rx->control_len = 0;
	rx->in_frame = true;
	rx->hdr_len = 0;
	return 0;
}

/* A whole control frame is in rx->control: describe it in ev. 0 or the
 * close code to fail with. */
static uint16_t finish_control(struct cs_ws_rx *rx, struct cs_ws_event *ev)
{
	rx->in_frame = false;
	if (rx->opcode == CS_WS_OP_PING || rx->opcode == CS_WS_OP_PONG) {
		ev->type = rx->opcode == CS_WS_OP_PING ? CS_WS_EV_PING : CS_WS_EV_PONG;
		ev->data = rx->control;
		ev->len = rx->control_len;
		return 0;
	}
	ev->type = CS_WS_EV_CLOSE;
	ev->data = rx->control;
	ev->len = 0;
	ev->code = CS_WS_CLOSE_NO_STATUS;
	if (rx->control_len == 1)
		return CS_WS_CLOSE_PROTOCOL;
	if (rx->control_len >= 2) {
		struct cs_utf8 u = {0};
		unsigned code = (unsigned)rx->control[0] << 8 | rx->control[1];

		if (!close_code_ok(code))
			return CS_WS_CLOSE_PROTOCOL;
		if (!cs_utf8_feed(&u, rx->control + 2, rx->control_len - 2u) || !cs_utf8_complete(&u))
			return CS_WS_CLOSE_BAD_DATA;
		ev->code = (uint16_t)code;
		ev->data = rx->control + 2;
		ev->len = rx->control_len - 2u;
	}
	rx->closed = true;
	rx->error_code = ev->code;
	return 0;
}

/* Report the peer's close again: after it, nothing else is parsed. */
static size_t repeat_close(struct cs_ws_rx *rx, size_t len, struct cs_ws_event *ev)
{
	ev->type = CS_WS_EV_CLOSE;
	ev->code = rx->error_code;
	ev->data = rx->control_len >= 2 ? rx->control + 2 : rx->control;
	ev->len = rx->control_len >= 2 ? rx->control_len - 2u : 0;
	return len;
}

size_t cs_ws_rx_feed(struct cs_ws_rx *rx, uint8_t *buf, size_t len, struct cs_ws_event *ev)
{
	size_t pos = 0;
	uint16_t code;

	memset(ev, 0, sizeof(*ev));
	if (rx->failed)
		return fail(rx, len, ev, rx->error_code);
	if (rx->closed)
		return repeat_close(rx, len, ev);
	/* Nothing can complete without input: an empty frame or control
	 * frame is reported by the call that reads its header's last byte. */
	if (len == 0)
		return 0;

	if (!rx->in_frame) {
		while (pos < len) {
			rx->hdr[rx->hdr_len++] = buf[pos++];
			if (rx->hdr_len == 2 && (code = check_start(rx)))
				return fail(rx, len, ev, code);
			if (rx->hdr_len >= 2 && rx->hdr_len == header_size(rx))
				break;
		}
		if (rx->hdr_len < 2 || rx->hdr_len < header_size(rx))
			return pos; /* CS_WS_EV_NONE: all of buf went into the header */
		code = start_frame(rx);
		if (code)
			return fail(rx, len, ev, code);
	}

	if (is_control(rx->opcode)) {
		size_t take = len - pos;

		if (take > rx->frame_len - rx->control_len)
			take = (size_t)(rx->frame_len - rx->control_len);
		memcpy(rx->control + rx->control_len, buf + pos, take);
		if (rx->masked)
			cs_ws_mask(rx->control + rx->control_len, take, rx->mask, rx->control_len);
		rx->control_len = (uint8_t)(rx->control_len + take);
		pos += take;
		if (rx->control_len < rx->frame_len)
			return pos;
		code = finish_control(rx, ev);
		if (code) {
			memset(ev, 0, sizeof(*ev));
			return fail(rx, len, ev, code);
		}
		return pos;
	}

	/* Data: hand over what arrived of the payload, in place. */
	uint64_t left = rx->frame_len - rx->frame_done;
	size_t take = len - pos;
	uint8_t *data = buf + pos;

	if (take > left)
		take = (size_t)left;
	if (take == 0 && left > 0)
		return pos;
	if (rx->masked)
		cs_ws_mask(data, take, rx->mask, rx->frame_done);
	if (rx->message_text && !cs_utf8_feed(&rx->utf8, data, take))
		return fail(rx, len, ev, CS_WS_CLOSE_BAD_DATA);

	ev->type = CS_WS_EV_DATA;
	ev->text = rx->message_text;
	ev->frame_start = rx->frame_done == 0;
	rx->frame_done += take;
	rx->message_done += take;
	ev->frame_end = rx->frame_done == rx->frame_len;
	ev->fin = rx->fin;
	ev->data = data;
	ev->len = take;
	ev->frame_len = rx->frame_len;
	ev->frame_done = rx->frame_done;
	ev->message_done = rx->message_done;
	pos += take;
	if (ev->frame_end) {
		rx->in_frame = false;
		if (rx->fin && rx->message_text && !cs_utf8_complete(&rx->utf8)) {
			memset(ev, 0, sizeof(*ev));
			return fail(rx, len, ev, CS_WS_CLOSE_BAD_DATA);
		}
	}
	return pos;
}
