/*
 * Open-loop HTTP/1.1 driver for the benchmarks (bench/load.py builds and runs it).
 *
 *   openloop PORT RATE FILE
 *
 * FILE holds the requests, each as "<length>\n<bytes>". Request i is due at
 * start + i / RATE, whatever happened to the earlier ones, and is sent on a new
 * connection to 127.0.0.1:PORT (the requests say "Connection: close", as gunicorn's
 * sync workers answer). Its latency runs from its due time to the end of its
 * response, so a server that falls behind is charged for the queue it builds (no
 * coordinated omission). A timerfd in the epoll set wakes the driver at each due
 * time to the nanosecond; epoll_wait's own timeout counts whole milliseconds.
 *
 * Output on stdout: a header line
 *   elapsed_us cpu_user_us cpu_system_us
 * (from the first due time to the last complete response, as the asyncio driver counts
 * it; the driver's own CPU), then one line per request in order: "<status> <latency_us>",
 * with status 0 for a request that failed (refused, reset, closed early, not HTTP, or no
 * response 10 s after its due time).
 *
 * The benchmarks' server shares the machine's cores with its driver. Python's asyncio
 * driver (load.py, used when there is no C compiler) spent 0.84 ms of CPU a request on
 * them; this one 0.22 ms, most of it the kernel's work for each new connection
 * (bench/RESULTS.md).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_NS 10000000000LL
#define BUFFER 65536

struct request {
    const char *bytes;
    size_t length;
};

struct connection {
    int fd;
    long index;          /* request number, -1 when the slot is free */
    size_t sent;
    size_t received;
    char buffer[BUFFER];
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void fail(const char *what) {
    perror(what);
    exit(2);
}

static char *read_file(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) fail(path);
    if (fseek(file, 0, SEEK_END) != 0) fail("fseek");
    long length = ftell(file);
    if (length < 0) fail("ftell");
    rewind(file);
    char *data = malloc((size_t)length + 1);
    if (!data) fail("malloc");
    if (fread(data, 1, (size_t)length, file) != (size_t)length) fail("fread");
    fclose(file);
    data[length] = '\0';
    *size = (size_t)length;
    return data;
}

static long parse_requests(char *data, size_t size, struct request **out) {
    long capacity = 1024, count = 0;
    struct request *requests = malloc(sizeof *requests * (size_t)capacity);
    if (!requests) fail("malloc");
    size_t at = 0;
    while (at < size) {
        char *end;
        /* A length: digits only (strtoul would take a sign), then a newline, then that many
         * bytes, at least one (an empty request would never leave the sending phase). */
        unsigned long length = data[at] >= '0' && data[at] <= '9' ? strtoul(data + at, &end, 10) : 0;
        if (length == 0 || *end != '\n' || length > size - (size_t)(end + 1 - data)) {
            fprintf(stderr, "malformed request file at byte %zu\n", at);
            exit(2);
        }
        if (count == capacity) {
            capacity *= 2;
            requests = realloc(requests, sizeof *requests * (size_t)capacity);
            if (!requests) fail("realloc");
        }
        requests[count].bytes = end + 1;
        requests[count].length = length;
        count++;
        at = (size_t)(end + 1 - data) + length;
    }
    *out = requests;
    return count;
}

/* The status when the response is complete, 0 while more is to come, -1 if it is not HTTP. */
static int complete(const char *buffer, size_t received, int eof) {
    const char *end = memmem(buffer, received, "\r\n\r\n", 4);
    if (!end) return eof ? -1 : 0;
    if (received < 12 || memcmp(buffer, "HTTP/1.", 7) != 0) return -1;
    int status = atoi(buffer + 9);
    size_t head = (size_t)(end - buffer) + 4;
    for (const char *line = buffer; line < end; line++) {
        if ((line == buffer || line[-1] == '\n') && strncasecmp(line, "content-length:", 15) == 0) {
            const char *value = line + 15;
            while (value < end && (*value == ' ' || *value == '\t')) value++;
            if (value == end || *value < '0' || *value > '9') return -1; /* no length: not a response we read */
            size_t length = strtoul(value, NULL, 10);
            return received - head >= length ? status : 0;
        }
    }
    return eof ? status : 0; /* no length: the body ends with the connection */
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT RATE FILE\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    double rate = atof(argv[2]);
    if (port <= 0 || rate <= 0) {
        fprintf(stderr, "PORT and RATE must be positive\n");
        return 2;
    }
    size_t size;
    char *data = read_file(argv[3], &size);
    struct request *requests;
    long total = parse_requests(data, size, &requests);

    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    long slots = total < 4096 ? total : 4096;
    if ((rlim_t)slots + 16 > limit.rlim_cur) slots = (long)limit.rlim_cur - 16;
    struct connection *pool = calloc((size_t)slots, sizeof *pool);
    long *free_slots = malloc(sizeof *free_slots * (size_t)slots);
    if (!pool || !free_slots) fail("calloc");
    long free_count = 0;
    for (long s = slots - 1; s >= 0; s--) {
        pool[s].index = -1;
        free_slots[free_count++] = s;
    }
    int *status = calloc((size_t)total, sizeof *status);
    int64_t *latency = calloc((size_t)total, sizeof *latency);
    if (!status || !latency) fail("calloc");

    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);

    int epoll = epoll_create1(0);
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (epoll < 0 || timer < 0) fail("epoll/timerfd");
    struct epoll_event timer_event = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, timer, &timer_event) != 0) fail("epoll_ctl");

    const int64_t interval = (int64_t)(1e9 / rate);
    const int64_t start = now_ns() + 50000000LL;
    int64_t last_done = start;
    int64_t last_scan = start;
    long next = 0, finished = 0, open = 0;

#define DUE(i) (start + (int64_t)(i) * interval)
#define FINISH(slot, code)                                                       \
    do {                                                                         \
        struct connection *c_ = &pool[slot];                                     \
        int64_t done_ = now_ns();                                                \
        status[c_->index] = (code);                                              \
        latency[c_->index] = done_ - DUE(c_->index);                             \
        if ((code) > 0 && done_ > last_done) last_done = done_;                  \
        close(c_->fd);                                                           \
        c_->index = -1;                                                          \
        free_slots[free_count++] = (slot);                                       \
        open--;                                                                  \
        finished++;                                                              \
    } while (0)

    struct epoll_event events[256];
    while (finished < total) {
        int64_t now = now_ns();
        while (next < total && DUE(next) <= now && free_count > 0) {
            long slot = free_slots[--free_count];
            struct connection *c = &pool[slot];
            c->index = next++;
            c->sent = c->received = 0;
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0) fail("socket");
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            open++;
            if (connect(c->fd, (struct sockaddr *)&address, sizeof address) != 0 && errno != EINPROGRESS) {
                FINISH(slot, 0);
                continue;
            }
            struct epoll_event event = {.events = EPOLLOUT, .data.u64 = (uint64_t)slot};
            if (epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &event) != 0) fail("epoll_ctl");
        }
        /* The next due time, while a connection is free to send it (else a response frees
         * one, and its event wakes the loop): an expired timer would spin. */
        struct itimerspec when = {0};
        if (next < total && free_count > 0) {
            int64_t due = DUE(next);
            when.it_value.tv_sec = due / 1000000000LL;
            when.it_value.tv_nsec = due % 1000000000LL;
        }
        if (timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, NULL) != 0) fail("timerfd_settime");
        /* Wake at least every 100 ms to time out requests that hang. */
        int ready = epoll_wait(epoll, events, 256, 100);
        if (ready < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait");
        }
        for (int e = 0; e < ready; e++) {
            if (events[e].data.u64 == UINT64_MAX) {
                uint64_t expirations;
                while (read(timer, &expirations, sizeof expirations) > 0) {
                }
                continue;
            }
            long slot = (long)events[e].data.u64;
            struct connection *c = &pool[slot];
            if (c->index < 0) continue;
            const struct request *r = &requests[c->index];
            if (c->sent < r->length) {
                int error = 0;
                socklen_t length = sizeof error;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
                    FINISH(slot, 0);
                    continue;
                }
                ssize_t wrote = send(c->fd, r->bytes + c->sent, r->length - c->sent, MSG_NOSIGNAL);
                if (wrote < 0 && errno != EAGAIN) {
                    FINISH(slot, 0);
                    continue;
                }
                if (wrote > 0) c->sent += (size_t)wrote;
                if (c->sent == r->length) {
                    struct epoll_event event = {.events = EPOLLIN, .data.u64 = (uint64_t)slot};
                    if (epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &event) != 0) fail("epoll_ctl");
                }
                continue;
            }
            for (;;) {
                if (c->received == BUFFER) {
                    FINISH(slot, 0); /* larger than any response the benchmarks expect */
                    break;
                }
                ssize_t got = recv(c->fd, c->buffer + c->received, BUFFER - c->received, 0);
                if (got < 0 && errno == EAGAIN) break;
                if (got < 0) {
                    FINISH(slot, 0);
                    break;
                }
                c->received += (size_t)got;
                int code = complete(c->buffer, c->received, got == 0);
                if (code != 0) {
                    FINISH(slot, code < 0 ? 0 : code);
                    break;
                }
                if (got == 0) {
                    FINISH(slot, 0); /* closed before the body it announced */
                    break;
                }
            }
        }
        int64_t now_check = now_ns();
        if (open > 0 && now_check - last_scan > 100000000LL) {
            last_scan = now_check;
            for (long s = 0; s < slots; s++) {
                if (pool[s].index >= 0 && now_check - DUE(pool[s].index) > TIMEOUT_NS) FINISH(s, 0);
            }
        }
    }

    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("%lld %lld %lld\n", (long long)((last_done - start) / 1000),
           (long long)usage.ru_utime.tv_sec * 1000000LL + usage.ru_utime.tv_usec,
           (long long)usage.ru_stime.tv_sec * 1000000LL + usage.ru_stime.tv_usec);
    for (long i = 0; i < total; i++) printf("%d %lld\n", status[i], (long long)(latency[i] / 1000));
    return 0;
}
