/*
 * pool.h - native worker threads for work that would block the loop
 * (name resolution now; blocking Lua calls later).
 *
 * A job's work() runs on a pool thread; its done() then runs on the loop
 * thread, posted through cs_loop_post(). Jobs start in submission order.
 */
#ifndef CS_POOL_H
#define CS_POOL_H

#include "dispatch.h"

typedef struct cs_pool cs_pool;
typedef struct cs_job cs_job;

struct cs_job {
	cs_post post;           /* carries done() back to the loop; private */
	cs_job *next;           /* queue link; private */
	cs_pool *pool;          /* private */
	void (*work)(cs_job *j); /* pool thread; must not touch loop state */
	void (*done)(cs_job *j); /* loop thread, after work() */
};

/* Start nthreads threads serving loop. */
int cs_pool_create(cs_loop *loop, unsigned nthreads, cs_pool **out);

/* Finish the jobs already queued, join the threads, free the pool. done()
 * callbacks of finished jobs still run through the loop's posts. */
void cs_pool_destroy(cs_pool *pool);

/* Queue a job (loop thread or any thread). */
void cs_pool_submit(cs_pool *pool, cs_job *job);

/* Jobs queued or running (not those whose done() is still to run). */
unsigned cs_pool_pending(const cs_pool *pool);

#endif
