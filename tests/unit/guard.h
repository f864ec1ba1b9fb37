/*
 * guard.h - copies of test inputs that end right before an unreadable page,
 * so a parser that reads one byte past its input faults at once instead of
 * reading whatever happened to follow in memory.
 */
#ifndef CS_TEST_GUARD_H
#define CS_TEST_GUARD_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
	void *map;
	size_t map_len;
	uint8_t *p; /* the copy: p[len] is the first byte of the PROT_NONE page */
};

/* Map room for up to cap bytes followed by a PROT_NONE page. Aborts the
 * test on failure. Release with guard_free(). */
static inline void guard_alloc(struct guard *g, size_t cap)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data_pages = (cap + page - 1) / page;

	if (data_pages == 0)
		data_pages = 1;
	g->map_len = (data_pages + 1) * page;
	g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(g->map != MAP_FAILED, "mmap");
	cr_assert(mprotect((uint8_t *)g->map + data_pages * page, page, PROT_NONE) == 0, "mprotect");
	g->p = (uint8_t *)g->map + data_pages * page;
}

/* Copy src[0..len) (len at most the cap given to guard_alloc) so that it
 * ends right at the PROT_NONE page; the copy is writable. Returns g->p,
 * which then points at it. Reusable: each call replaces the last copy. */
static inline uint8_t *guard_place(struct guard *g, const void *src, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t *end = (uint8_t *)g->map + g->map_len - page;

	cr_assert(len <= (size_t)(end - (uint8_t *)g->map), "guard_place: %zu bytes do not fit", len);
	g->p = end - len;
	if (len)
		memcpy(g->p, src, len);
	return g->p;
}

/* guard_alloc() and guard_place() in one. */
static inline uint8_t *guard_put(struct guard *g, const void *src, size_t len)
{
	guard_alloc(g, len);
	return guard_place(g, src, len);
}

static inline void guard_free(struct guard *g)
{
	munmap(g->map, g->map_len);
	g->map = NULL;
}

#endif
