/*
 * wsframe.h - the WebSocket protocol (RFC 6455): an incremental frame
 * receiver that enforces the protocol's rules, frame headers for sending,
 * masking, the handshake's accept key and UTF-8 validation.
 *
 * Nothing here allocates, does I/O or knows of Lua. The receiver works on
 * the caller's mutable buffer and unmasks payload in place.
 *
 * Receiving rules (what makes cs_ws_rx_feed() report CS_WS_EV_ERROR, with
 * the close code to send):
 *  - 1002: RSV bits set; an unknown opcode; a control frame with FIN clear
 *    or a payload over 125 bytes; a continuation frame with no message
 *    open, or a new text/binary frame while a fragmented one is open; a
 *    server receiving an unmasked frame, or a client receiving a masked
 *    one; a 64-bit length with the top bit set or a length not in its
 *    shortest form; a close frame whose payload is 1 byte or whose code is
 *    not one a peer may send (1000-1003, 1007-1011, 3000-4999).
 *  - 1009: a data frame whose payload is larger than max_frame (control
 *    frames are bounded by 125 bytes instead).
 *  - 1007: a text message (or a close reason) that is not valid UTF-8;
 *    the check is incremental, so it fails at the first bad byte.
 */
#ifndef CS_WS_WSFRAME_H
#define CS_WS_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cs_ws_opcode {
	CS_WS_OP_CONT = 0x0,
	CS_WS_OP_TEXT = 0x1,
	CS_WS_OP_BINARY = 0x2,
	CS_WS_OP_CLOSE = 0x8,
	CS_WS_OP_PING = 0x9,
	CS_WS_OP_PONG = 0xA,
};

enum cs_ws_close_code {
	CS_WS_CLOSE_NORMAL = 1000,
	CS_WS_CLOSE_GOING_AWAY = 1001,
	CS_WS_CLOSE_PROTOCOL = 1002,
	CS_WS_CLOSE_UNSUPPORTED = 1003,
	CS_WS_CLOSE_NO_STATUS = 1005,  /* never sent: the peer's close had no code */
	CS_WS_CLOSE_BAD_DATA = 1007,
	CS_WS_CLOSE_TOO_BIG = 1009,
};

/* Largest frame header: 2 + 8 (length) + 4 (mask). */
#define CS_WS_MAX_HEADER 14
#define CS_WS_MAX_CONTROL 125

/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). state 0 means "between characters". */
struct cs_utf8 {
	uint32_t state;
};
/* false at the first byte that cannot be valid whatever follows. */
bool cs_utf8_feed(struct cs_utf8 *u, const uint8_t *p, size_t len);
/* The input fed so far ends on a character boundary. */
static inline bool cs_utf8_complete(const struct cs_utf8 *u) { return u->state == 0; }

enum cs_ws_event_type {
	CS_WS_EV_NONE,  /* everything consumed; more input needed */
	CS_WS_EV_DATA,  /* payload bytes of a text, binary or continuation frame */
	CS_WS_EV_PING,  /* a whole ping; its payload in data/len */
	CS_WS_EV_PONG,  /* a whole pong */
	CS_WS_EV_CLOSE, /* the peer's close: code (1005 when it sent none), reason */
	CS_WS_EV_ERROR, /* a protocol violation: code is the close code to send */
};

struct cs_ws_event {
	uint8_t type;          /* enum cs_ws_event_type */
	bool text;             /* DATA: the message is text (from its first frame) */
	bool frame_start;      /* DATA: data starts at the frame's first payload byte */
	bool frame_end;        /* DATA: data ends the frame */
	bool fin;              /* DATA: the frame is the message's last */
	const uint8_t *data;   /* DATA/PING/PONG: payload, unmasked, inside the
				* buffer given to feed (or the receiver's own
				* control buffer); CLOSE: the reason */
	size_t len;
	uint64_t frame_len;    /* DATA: the whole frame's payload length */
	uint64_t frame_done;   /* DATA: frame payload bytes delivered, this chunk included */
	uint64_t message_done; /* DATA: message bytes delivered, this chunk included */
	uint16_t code;         /* CLOSE, ERROR */
};

struct cs_ws_rx {
	/* settings */
	bool server;           /* frames must arrive masked */
	uint64_t max_frame;    /* largest payload accepted */
	/* state: private */
	uint8_t hdr[CS_WS_MAX_HEADER];
	uint8_t hdr_len;
	bool in_frame;         /* header read, payload pending */
	bool in_message;       /* a fragmented message is open */
	bool message_text;
	bool failed;           /* an error was reported: feed reports it again */
	bool closed;           /* the peer's close was reported: likewise */
	uint8_t opcode, mask[4];
	bool fin, masked;
	uint64_t frame_len, frame_done, message_done;
	struct cs_utf8 utf8;
	uint8_t control[CS_WS_MAX_CONTROL];
	uint8_t control_len;
	uint16_t error_code;   /* the ERROR's code, or the CLOSE's */
};

void cs_ws_rx_init(struct cs_ws_rx *rx, bool server, uint64_t max_frame);

/*
 * Parse buf[0..len), unmasking payload in place. Returns how many bytes
 * were consumed and describes in *ev the one thing that happened; call
 * again with the rest (buf + consumed) until it reports CS_WS_EV_NONE with
 * nothing left. A DATA event covers at most the rest of its frame and may
 * be empty only for an empty frame. Frame headers and control payloads
 * split across calls are kept inside rx (they are consumed). Once it
 * reported CS_WS_EV_ERROR (or CS_WS_EV_CLOSE), further input is consumed
 * and reported as the same event again.
 */
size_t cs_ws_rx_feed(struct cs_ws_rx *rx, uint8_t *buf, size_t len, struct cs_ws_event *ev);

/* Write a frame header for a payload of len bytes to out: opcode with FIN
 * set (fin false for a non-final fragment), the shortest length form, and
 * the mask key when mask is non-NULL (client frames). Returns its size. */
size_t cs_ws_header(uint8_t out[CS_WS_MAX_HEADER], uint8_t opcode, bool fin, uint64_t len,
		    const uint8_t *mask);

/* XOR p[0..len) with the key, as if p started offset bytes into the
 * payload. Applying it twice restores the data. */
void cs_ws_mask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset);

/* Sec-WebSocket-Accept for the client's Sec-WebSocket-Key: base64 of
 * SHA-1(key + the RFC's GUID), 28 characters and a NUL into out.
 * 0, or -1 when the key is not 24 base64 characters (16 bytes). */
int cs_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
