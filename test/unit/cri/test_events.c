/* cri/events.c: the event hub's queues, backlog, drop and close rules, without gRPC. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "events.h"

/* A driver that only counts its wakes. */
struct drv {
        int wakes;
};

static void wake(void *data)
{
        ((struct drv *)data)->wakes++;
}

/* An event whose one byte is @tag. */
static struct cri_event *ev(unsigned char tag)
{
        struct cri_event *e = cri_event_new(1);

        assert_non_null(e);
        e->data[0] = tag;
        return e;
}

/* The next event of @s, which must be one with @tag. */
static void expect(struct cri_sub *s, unsigned char tag)
{
        struct cri_event *e = NULL;

        assert_int_equal(cri_sub_next(s, &e), CRI_SUB_EVENT);
        assert_int_equal(e->data[0], tag);
        cri_event_unref(e);
}

static void test_two_subscribers_share_events(void **state)
{
        struct cri_events *h = cri_events_new(4);
        struct drv a = {0}, b = {0};
        struct cri_sub *sa, *sb;
        struct cri_event *e = NULL;
        size_t n, bl;

        (void)state;
        assert_int_equal(cri_events_subscribe(h, wake, &a, &sa), 0);
        assert_int_equal(cri_events_subscribe(h, wake, &b, &sb), 0);
        /* Both start busy: their drivers ask at once and find nothing. */
        assert_int_equal(cri_sub_next(sa, &e), CRI_SUB_IDLE);
        assert_int_equal(cri_sub_next(sb, &e), CRI_SUB_IDLE);
        e = ev(1);
        cri_events_publish(h, cri_event_ref(e));
        /* One packing, shared: the publisher's ref, and one per subscriber. */
        assert_int_equal(atomic_load(&e->refs), 3);
        assert_int_equal(a.wakes, 1);
        assert_int_equal(b.wakes, 1);
        /* Busy now: a second event wakes nobody. */
        cri_events_publish(h, ev(2));
        assert_int_equal(a.wakes, 1);
        expect(sa, 1);
        expect(sa, 2);
        assert_int_equal(cri_sub_next(sa, &e), CRI_SUB_IDLE);
        expect(sb, 1);
        cri_event_unref(e);
        cri_events_counts(h, &n, &bl);
        assert_int_equal(n, 2);
        assert_int_equal(bl, 0);
        /* An idle close hands the driver role to the caller; a busy one does not. */
        assert_int_equal(cri_sub_close(sa), 1);
        assert_int_equal(cri_sub_close(sb), 0);
        assert_int_equal(cri_sub_next(sb, &e), CRI_SUB_CLOSED);
        assert_int_equal(cri_sub_close(sb), 0); /* idempotent */
        cri_events_counts(h, &n, &bl);
        assert_int_equal(n, 0);
        cri_sub_free(sa);
        cri_sub_free(sb);
        cri_events_free(h);
}

static void test_slow_subscriber_dropped_others_not(void **state)
{
        struct cri_events *h = cri_events_new(3);
        struct drv slow = {0}, fast = {0};
        struct cri_sub *ss, *sf;
        struct cri_event *e = NULL;
        size_t n, bl;

        (void)state;
        assert_int_equal(cri_events_subscribe(h, wake, &slow, &ss), 0);
        assert_int_equal(cri_events_subscribe(h, wake, &fast, &sf), 0);
        assert_int_equal(cri_sub_next(ss, &e), CRI_SUB_IDLE);
        assert_int_equal(cri_sub_next(sf, &e), CRI_SUB_IDLE);
        /* The slow one takes its first event (a send in flight) and never asks again; the
         * fast one takes each as it comes. */
        cri_events_publish(h, ev(0));
        expect(ss, 0);
        expect(sf, 0);
        assert_int_equal(cri_sub_next(sf, &e), CRI_SUB_IDLE);
        for (unsigned char i = 1; i <= 10; i++) {
                cri_events_publish(h, ev(i));
                expect(sf, i);
                assert_int_equal(cri_sub_next(sf, &e), CRI_SUB_IDLE);
        }
        assert_int_equal(fast.wakes, 11);
        /* 3 queued, the 4th overflowed it: dropped, out of the hub, its queue released. */
        cri_events_counts(h, &n, &bl);
        assert_int_equal(n, 1);
        assert_int_equal(cri_sub_next(ss, &e), CRI_SUB_DROPPED);
        assert_int_equal(cri_sub_queue_max(ss), 3);
        /* Its drop woke nobody twice: it was busy. */
        assert_int_equal(slow.wakes, 1);
        cri_sub_free(ss);
        assert_int_equal(cri_sub_close(sf), 1); /* idle: the closer ends it */
        cri_sub_free(sf);
        cri_events_free(h);
}

static void test_idle_subscriber_dropped_is_woken(void **state)
{
        struct cri_events *h = cri_events_new(2);
        struct drv d = {0};
        struct cri_sub *s;
        struct cri_event *e = NULL;

        (void)state;
        assert_int_equal(cri_events_subscribe(h, wake, &d, &s), 0);
        assert_int_equal(cri_sub_next(s, &e), CRI_SUB_IDLE);
        cri_events_publish(h, ev(1)); /* wakes it; its driver does not get to run */
        cri_events_publish(h, ev(2));
        cri_events_publish(h, ev(3)); /* overflow */
        assert_int_equal(d.wakes, 1);
        assert_int_equal(cri_sub_next(s, &e), CRI_SUB_DROPPED);
        /* Later events go to the backlog: nobody subscribes. */
        cri_events_publish(h, ev(4));
        {
                size_t n, bl;

                cri_events_counts(h, &n, &bl);
                assert_int_equal(n, 0);
                assert_int_equal(bl, 1);
        }
        cri_sub_free(s);
        cri_events_free(h);
}

static void test_backlog_bounded_handed_once(void **state)
{
        struct cri_events *h = cri_events_new(3);
        struct drv d = {0};
        struct cri_sub *s1, *s2;
        struct cri_event *e = NULL;
        size_t n, bl;

        (void)state;
        for (unsigned char i = 1; i <= 5; i++)
                cri_events_publish(h, ev(i));
        cri_events_counts(h, &n, &bl);
        assert_int_equal(bl, 3); /* bounded: the oldest gave way */
        assert_int_equal(cri_events_subscribe(h, wake, &d, &s1), 0);
        cri_events_counts(h, &n, &bl);
        assert_int_equal(bl, 0);
        expect(s1, 3);
        expect(s1, 4);
        expect(s1, 5);
        assert_int_equal(cri_sub_next(s1, &e), CRI_SUB_IDLE);
        /* The next subscriber gets nothing old. */
        assert_int_equal(cri_events_subscribe(h, wake, &d, &s2), 0);
        assert_int_equal(cri_sub_next(s2, &e), CRI_SUB_IDLE);
        assert_int_equal(cri_sub_close(s1), 1);
        assert_int_equal(cri_sub_close(s2), 1);
        cri_sub_free(s1);
        cri_sub_free(s2);
        /* A backlog left at free is released (ASan/valgrind would see a leak). */
        cri_events_publish(h, ev(9));
        cri_events_free(h);
}

static void test_shutdown_ends_everyone(void **state)
{
        struct cri_events *h = cri_events_new(4);
        struct drv a = {0}, b = {0};
        struct cri_sub *sa, *sb, *sc;
        struct cri_event *e = NULL;

        (void)state;
        assert_int_equal(cri_events_subscribe(h, wake, &a, &sa), 0);
        assert_int_equal(cri_events_subscribe(h, wake, &b, &sb), 0);
        assert_int_equal(cri_sub_next(sa, &e), CRI_SUB_IDLE); /* idle: shutdown wakes it */
        cri_events_publish(h, ev(1)); /* wakes sa; sb is busy still, with one queued */
        expect(sa, 1);
        assert_int_equal(cri_sub_next(sa, &e), CRI_SUB_IDLE);
        cri_events_shutdown(h);
        assert_int_equal(a.wakes, 2);
        assert_int_equal(cri_sub_next(sa, &e), CRI_SUB_SHUTDOWN);
        assert_int_equal(cri_sub_next(sb, &e), CRI_SUB_SHUTDOWN);
        assert_int_equal(cri_events_subscribe(h, wake, &a, &sc), -ESHUTDOWN);
        assert_int_equal(cri_sub_close(sa), 0);
        cri_sub_free(sa);
        cri_sub_free(sb);
        cri_events_free(h);
}

/* Publishers on several threads while a driver drains: every event once, in order each. */
struct pub_arg {
        struct cri_events *h;
        unsigned char tag;
};

static void *publisher(void *p)
{
        struct pub_arg *a = p;

        for (int i = 0; i < 2000; i++)
                cri_events_publish(a->h, ev(a->tag));
        return NULL;
}

static void test_concurrent_publishers(void **state)
{
        struct cri_events *h = cri_events_new(100000);
        struct drv d = {0};
        struct cri_sub *s;
        struct cri_event *e = NULL;
        struct pub_arg args[4];
        pthread_t t[4];
        size_t got[4] = {0};

        (void)state;
        assert_int_equal(cri_events_subscribe(h, wake, &d, &s), 0);
        for (int i = 0; i < 4; i++) {
                args[i] = (struct pub_arg){h, (unsigned char)i};
                assert_int_equal(pthread_create(&t[i], NULL, publisher, &args[i]), 0);
        }
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        while (cri_sub_next(s, &e) == CRI_SUB_EVENT) {
                got[e->data[0]]++;
                cri_event_unref(e);
        }
        for (int i = 0; i < 4; i++)
                assert_int_equal(got[i], 2000);
        assert_int_equal(cri_sub_close(s), 1);
        cri_sub_free(s);
        cri_events_free(h);
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test(test_two_subscribers_share_events),
                cmocka_unit_test(test_slow_subscriber_dropped_others_not),
                cmocka_unit_test(test_idle_subscriber_dropped_is_woken),
                cmocka_unit_test(test_backlog_bounded_handed_once),
                cmocka_unit_test(test_shutdown_ends_everyone),
                cmocka_unit_test(test_concurrent_publishers),
        };
        return cmocka_run_group_tests(t, NULL, NULL);
}
