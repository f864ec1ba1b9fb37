/*
 * pool.c - a fixed set of threads taking jobs from one FIFO queue, in the
 * manner of libuv's threadpool: work() on a pool thread, done() back on the
 * loop thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "pool.h"

struct cs_pool {
	cs_loop *loop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	cs_job *head, *tail;
	unsigned pending; /* queued + running, guarded by lock */
	bool stopping;
	unsigned nthreads;
	pthread_t threads[];
};

/* Runs on the loop thread, possibly after the pool is gone: it must not
 * touch the pool. */
static void run_done(cs_post *p)
{
	cs_job *job = (cs_job *)p;
	job->done(job);
}

static void *worker(void *arg)
{
	cs_pool *pool = arg;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		cs_job *job = pool->head;
		if (!job)
			break; /* stopping and nothing left */
		pool->head = job->next;
		if (!pool->head)
			pool->tail = NULL;
		pthread_mutex_unlock(&pool->lock);
		job->work(job);
		job->post.run = run_done;
		pthread_mutex_lock(&pool->lock);
		pool->pending--;
		pthread_mutex_unlock(&pool->lock);
		cs_loop_post(pool->loop, &job->post);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

int cs_pool_create(cs_loop *loop, unsigned nthreads, cs_pool **out)
{
	cs_pool *pool = calloc(1, sizeof(*pool) + nthreads * sizeof(pthread_t));
	if (!pool)
		return -ENOMEM;
	pool->loop = loop;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	for (; pool->nthreads < nthreads; pool->nthreads++) {
		int r = pthread_create(&pool->threads[pool->nthreads], NULL, worker, pool);
		if (r) {
			cs_pool_destroy(pool);
			return -r;
		}
	}
	*out = pool;
	return 0;
}

void cs_pool_destroy(cs_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

void cs_pool_submit(cs_pool *pool, cs_job *job)
{
	job->pool = pool;
	job->next = NULL;
	pthread_mutex_lock(&pool->lock);
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->pending++;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

unsigned cs_pool_pending(const cs_pool *pool)
{
	return pool->pending; /* a hint read on the loop thread */
}
