/* The C floor of SFU forwarding: CPU time per forwarded SRTP packet, in µs (issue 6).
 *
 * What an SFU written in C must do at the least to forward one publisher's stream to N
 * subscribers on loopback, with Debian's libsrtp2 (the library pylibsrtp wraps) and the same
 * SRTP profile as benchmarks/hot_path.py (SRTP_AEAD_AES_256_GCM, what two aiortc peers
 * negotiate). Built and run by benchmarks/c_floor.py; prints one JSON object on stdout.
 *
 * Per received packet (timed): srtp_unprotect with the publisher's inbound session (unless
 * --ingress none), the payload offset found from the header (CSRC count, extension length).
 * Then per subscriber (timed): marker/PT, seq, ts and abs-send-time written into that
 * subscriber's preallocated buffer (its SSRC and RFC 8285 one-byte extension block, with its
 * own ids, are prebuilt), the payload copied after it, srtp_protect in place with the
 * subscriber's own outbound session, and the send:
 *
 *   sendto           N UDP sockets on 127.0.0.1, one per subscriber (as with one ICE socket
 *                    per transport), one sendto(2) per forwarded packet;
 *   sendto_shared    one UDP socket for all subscribers (as mediasoup's WebRtcServer shares
 *                    one port among transports), one sendto(2) per forwarded packet;
 *   sendmmsg_shared  the same shared socket, one sendmmsg(2) per received packet carrying its
 *                    N copies: sendmmsg sends on ONE socket, so batching the fan-out of one
 *                    packet needs the shared socket;
 *   send_connected   N UDP sockets, each connect(2)ed to its subscriber's sink, one send(2)
 *                    per forwarded packet (no route lookup per packet; what the Python
 *                    reference srtp_protect_sendto in hot_path.py does, with one socket);
 *   no_send          everything but the send: NOT a forwarding floor, it shows what the
 *                    syscall and the loopback delivery cost (the difference to the others).
 *
 * The kernel's loopback delivery into each subscriber's sink socket happens inside the send
 * call, so it is timed too. CPU time is CLOCK_PROCESS_CPUTIME_ID (user + system), as
 * time.process_time in hot_path.py. Not timed: the publisher's packetising and srtp_protect
 * (done before each chunk), and draining the sinks after each chunk, so that no sink buffer
 * overflows; the drain counts what each sink received ("delivered").
 *
 * Usage: floor --kind video|audio --subscribers N --variant V [--ingress unprotect|none]
 *              [--packets P] [--repetitions R] [--debug]
 * P received packets per repetition (each forwarded N times), R timed repetitions after one
 * warm-up. --debug adds each subscriber's SRTP key, SSRC, first seq and the last SRTP packet
 * its sink received, so a test can decrypt it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <srtp2/srtp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEY_BYTES 44          /* AES-256 key (32) + GCM salt (12) */
#define BUFFER_BYTES 2048     /* room for the packet and SRTP_MAX_TRAILER_LEN */
#define SINK_RCVBUF_BYTES (64 * 1024 * 1024)
#define SINK_SKB_BYTES 4096   /* a conservative kernel cost of one queued datagram */
#define CHUNK_SENDS 5000      /* forwarded packets between two drains (at most) */
#define CHUNK_MAX_RECEIVED 1000
#define PUBLISHER_SSRC 0x11223344u
#define SUBSCRIBER_SSRC_BASE 0x10000000u
#define SEQ_STRIDE 1000       /* subscriber d's first seq is d * SEQ_STRIDE */
#define MAX_SAMPLES 1024

/* Header extension ids, as in hot_path.py: the publisher's and the subscribers'. */
enum { PUB_MID = 1, PUB_ABS = 2, PUB_LEVEL = 3, SUB_MID = 4, SUB_ABS = 5, SUB_LEVEL = 6 };

struct kind {
    const char *name;
    int publisher_pt, subscriber_pt, payload_bytes, ts_step, packets_per_frame, audio;
};

static const struct kind AUDIO = {"audio", 111, 109, 100, 960, 1, 1};
static const struct kind VIDEO = {"video", 96, 98, 1100, 3000, 3, 0};

struct subscriber {
    srtp_t session;
    unsigned char key[KEY_BYTES];
    int sock;                 /* own socket (variant sendto) or -1 */
    int sink;
    struct sockaddr_in sink_addr;
    uint32_t ssrc;
    uint16_t first_seq, seq;
    uint32_t ts_offset;
    int header_bytes;         /* 12 + extension block */
    unsigned char buffer[BUFFER_BYTES];
    int length;               /* of the SRTP packet in buffer */
    unsigned long received;
    unsigned char last[BUFFER_BYTES];
    int last_length;
};

static void die(const char *what, long code)
{
    fprintf(stderr, "floor: %s (%ld)\n", what, code);
    exit(1);
}

static void random_bytes(unsigned char *out, size_t n)
{
    while (n) {
        ssize_t got = getrandom(out, n, 0);
        if (got < 0)
            die("getrandom", errno);
        out += got;
        n -= (size_t)got;
    }
}

/* A libsrtp session configured as aiortc's RTCDtlsTransport._setup_srtp does. */
static srtp_t new_session(const unsigned char *key, int outbound)
{
    srtp_policy_t policy;
    srtp_t session;
    memset(&policy, 0, sizeof policy);
    srtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtp);
    srtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtcp);
    policy.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    policy.key = (unsigned char *)key;
    policy.window_size = 1024;
    policy.allow_repeat_tx = 1;
    srtp_err_status_t status = srtp_create(&session, &policy);
    if (status != srtp_err_status_ok)
        die("srtp_create", status);
    return session;
}

static int udp_socket(struct sockaddr_in *bound, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket", errno);
    if (rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); /* capped by rmem_max */
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind", errno);
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    if (bound)
        *bound = addr;
    return fd;
}

/* RFC 8285 one-byte extension block: abs-send-time (3 bytes), audio level (audio), MID "0". */
static int write_extensions(unsigned char *p, int abs_id, int level_id, int mid_id, int audio)
{
    unsigned char elements[16];
    int n = 0;
    elements[n++] = (unsigned char)(abs_id << 4 | 2);
    n += 3;                                   /* abs-send-time, patched per packet */
    if (audio) {
        elements[n++] = (unsigned char)(level_id << 4 | 0);
        elements[n++] = 0x80 | 30;            /* voice, -30 dBov */
    }
    elements[n++] = (unsigned char)(mid_id << 4 | 0);
    elements[n++] = '0';
    int words = (n + 3) / 4;
    memset(elements + n, 0, (size_t)(words * 4 - n));
    p[0] = 0xBE;
    p[1] = 0xDE;
    p[2] = (unsigned char)(words >> 8);
    p[3] = (unsigned char)words;
    memcpy(p + 4, elements, (size_t)words * 4);
    return 4 + words * 4;
}

static void put16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = (unsigned char)v; }
static void put32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

/* The publisher's plain packet number k (a global count): payload bytes (k + i) & 0xff. */
static int publisher_packet(const struct kind *kind, unsigned long k, unsigned char *out)
{
    out[0] = 0x90;                            /* V=2, X */
    int marker = (int)(k % (unsigned long)kind->packets_per_frame) == kind->packets_per_frame - 1;
    out[1] = (unsigned char)(marker << 7 | kind->publisher_pt);
    put16(out + 2, (uint16_t)k);
    put32(out + 4, (uint32_t)(k / (unsigned long)kind->packets_per_frame * (unsigned long)kind->ts_step));
    put32(out + 8, PUBLISHER_SSRC);
    int header = 12 + write_extensions(out + 12, PUB_ABS, PUB_LEVEL, PUB_MID, kind->audio);
    for (int i = 0; i < kind->payload_bytes; i++)
        out[header + i] = (unsigned char)(k + (unsigned long)i);
    return header + kind->payload_bytes;
}

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Counts what waits on the subscriber's sink; keeps the last datagram (for --debug). */
static void drain(struct subscriber *s)
{
    for (;;) {
        ssize_t got = recv(s->sink, s->last, BUFFER_BYTES, 0);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            die("recv", errno);
        }
        s->last_length = (int)got;
        s->received++;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_hex(const unsigned char *p, int n)
{
    putchar('"');
    for (int i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('"');
}

int main(int argc, char **argv)
{
    const struct kind *kind = &VIDEO;
    const char *variant = "sendto";
    int n = 10, packets = 2000, repetitions = 11, ingress = 1, debug = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--debug")) { debug = 1; continue; }
        if (!value)
            die("missing value of an option", i);
        i++;
        if (!strcmp(arg, "--kind")) kind = !strcmp(value, "audio") ? &AUDIO : &VIDEO;
        else if (!strcmp(arg, "--subscribers")) n = atoi(value);
        else if (!strcmp(arg, "--variant")) variant = value;
        else if (!strcmp(arg, "--packets")) packets = atoi(value);
        else if (!strcmp(arg, "--repetitions")) repetitions = atoi(value);
        else if (!strcmp(arg, "--ingress")) ingress = strcmp(value, "none") != 0;
        else die("unknown option", i - 1);
    }
    int mode = !strcmp(variant, "sendto") ? 0 : !strcmp(variant, "sendto_shared") ? 1
             : !strcmp(variant, "sendmmsg_shared") ? 2
             : !strcmp(variant, "send_connected") ? 3
             : !strcmp(variant, "no_send") ? 4 : -1;
    if (mode < 0 || n < 1 || packets < 1 || repetitions < 1 || repetitions > MAX_SAMPLES - 1)
        die("bad arguments", mode);

    srtp_err_status_t status = srtp_init();
    if (status != srtp_err_status_ok)
        die("srtp_init", status);

    unsigned char publisher_key[KEY_BYTES];
    random_bytes(publisher_key, KEY_BYTES);
    srtp_t publisher = new_session(publisher_key, 1);
    srtp_t inbound = new_session(publisher_key, 0);

    struct subscriber *subs = calloc((size_t)n, sizeof *subs);
    if (!subs)
        die("calloc", n);
    int shared = mode == 1 || mode == 2 ? udp_socket(NULL, 0) : -1;
    int sink_capacity = CHUNK_MAX_RECEIVED;
    for (int d = 0; d < n; d++) {
        struct subscriber *s = &subs[d];
        random_bytes(s->key, KEY_BYTES);
        s->session = new_session(s->key, 1);
        s->sock = shared < 0 ? udp_socket(NULL, 0) : -1;
        s->sink = udp_socket(&s->sink_addr, SINK_RCVBUF_BYTES);
        if (mode == 3 && connect(s->sock, (struct sockaddr *)&s->sink_addr, sizeof s->sink_addr) < 0)
            die("connect", errno);
        int rcvbuf = 0;
        socklen_t len = sizeof rcvbuf;
        getsockopt(s->sink, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len);
        if (rcvbuf / SINK_SKB_BYTES < sink_capacity)
            sink_capacity = rcvbuf / SINK_SKB_BYTES;
        s->ssrc = SUBSCRIBER_SSRC_BASE + (uint32_t)d;
        s->first_seq = s->seq = (uint16_t)(d * SEQ_STRIDE);
        s->ts_offset = 0x01000000u * (uint32_t)d;
        unsigned char *h = s->buffer;
        h[0] = 0x90;
        put32(h + 8, s->ssrc);
        s->header_bytes = 12 + write_extensions(h + 12, SUB_ABS, SUB_LEVEL, SUB_MID, kind->audio);
    }
    /* Received packets between two drains: about CHUNK_SENDS forwarded packets, and never
     * more than a sink's buffer holds. */
    int chunk = CHUNK_SENDS / n;
    if (chunk > sink_capacity) chunk = sink_capacity;
    if (chunk > CHUNK_MAX_RECEIVED) chunk = CHUNK_MAX_RECEIVED;
    if (chunk < 1) chunk = 1;

    unsigned char (*input)[BUFFER_BYTES] = malloc((size_t)chunk * BUFFER_BYTES);
    int *input_length = malloc((size_t)chunk * sizeof(int));
    struct mmsghdr *messages = calloc((size_t)n, sizeof *messages);
    struct iovec *iovs = calloc((size_t)n, sizeof *iovs);
    if (!input || !input_length || !messages || !iovs)
        die("malloc", chunk);
    for (int d = 0; d < n; d++) {
        iovs[d].iov_base = subs[d].buffer;
        messages[d].msg_hdr.msg_iov = &iovs[d];
        messages[d].msg_hdr.msg_iovlen = 1;
        messages[d].msg_hdr.msg_name = &subs[d].sink_addr;
        messages[d].msg_hdr.msg_namelen = sizeof subs[d].sink_addr;
    }

    double samples_us[MAX_SAMPLES];
    unsigned long k = 0, sent = 0, failed = 0;
    int plain_bytes = 0, srtp_bytes = 0;
    for (int rep = 0; rep <= repetitions; rep++) { /* the first one warms up */
        double elapsed = 0;
        for (int done = 0; done < packets; done += chunk) {
            int count = packets - done < chunk ? packets - done : chunk;
            for (int j = 0; j < count; j++) { /* the publisher, not timed */
                int length = publisher_packet(kind, k + (unsigned long)j, input[j]);
                status = srtp_protect(publisher, input[j], &length);
                if (status != srtp_err_status_ok)
                    die("publisher srtp_protect", status);
                input_length[j] = length;
            }
            double start = cpu_seconds();
            for (int j = 0; j < count; j++, k++) {
                unsigned char *p = input[j];
                int length = input_length[j];
                if (ingress) {
                    status = srtp_unprotect(inbound, p, &length);
                    if (status != srtp_err_status_ok)
                        die("srtp_unprotect", status);
                }
                int offset = 12 + 4 * (p[0] & 0x0f);
                if (p[0] & 0x10)
                    offset += 4 + 4 * (p[offset + 2] << 8 | p[offset + 3]);
                int payload = length - offset;
                if (ingress == 0)
                    payload -= 16; /* still encrypted: leave the GCM tag out */
                unsigned char marker_pt = (p[1] & 0x80) | (unsigned char)kind->subscriber_pt;
                uint32_t ts = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
                /* abs-send-time: 6.18 fixed-point seconds, from the packet number here. */
                uint32_t abs = (uint32_t)(k * 20) & 0xffffff;
                for (int d = 0; d < n; d++) {
                    struct subscriber *s = &subs[d];
                    unsigned char *h = s->buffer;
                    h[1] = marker_pt;
                    put16(h + 2, s->seq++);
                    put32(h + 4, ts + s->ts_offset);
                    h[17] = (unsigned char)(abs >> 16);
                    h[18] = (unsigned char)(abs >> 8);
                    h[19] = (unsigned char)abs;
                    memcpy(h + s->header_bytes, p + offset, (size_t)payload);
                    int out = s->header_bytes + payload;
                    status = srtp_protect(s->session, h, &out);
                    if (status != srtp_err_status_ok)
                        die("srtp_protect", status);
                    s->length = out;
                    if (mode == 2) {
                        iovs[d].iov_len = (size_t)out;
                        continue;
                    }
                    if (mode == 4) {
                        sent++;
                        continue;
                    }
                    ssize_t r = mode == 3 ? send(s->sock, h, (size_t)out, 0)
                              : sendto(shared < 0 ? s->sock : shared, h, (size_t)out, 0,
                                       (struct sockaddr *)&s->sink_addr, sizeof s->sink_addr);
                    if (r < 0) failed++; else sent++;
                }
                if (mode == 2) {
                    int at = 0;
                    while (at < n) {
                        int r = sendmmsg(shared, messages + at, (unsigned)(n - at), 0);
                        if (r <= 0) { failed += (unsigned long)(n - at); break; }
                        sent += (unsigned long)r;
                        at += r;
                    }
                }
                plain_bytes = subs[0].header_bytes + payload;
                srtp_bytes = subs[0].length;
            }
            elapsed += cpu_seconds() - start;
            for (int d = 0; d < n; d++) /* not timed */
                drain(&subs[d]);
        }
        if (rep)
            samples_us[rep - 1] = elapsed * 1e6 / ((double)packets * n);
    }

    unsigned long received = mode == 4 ? sent : 0, expected = (unsigned long)packets * (unsigned long)(repetitions + 1);
    for (int d = 0; d < n; d++)
        received += subs[d].received;
    double sorted[MAX_SAMPLES];
    memcpy(sorted, samples_us, sizeof(double) * (size_t)repetitions);
    qsort(sorted, (size_t)repetitions, sizeof(double), cmp_double);
    double median = repetitions % 2 ? sorted[repetitions / 2]
                                    : (sorted[repetitions / 2 - 1] + sorted[repetitions / 2]) / 2;
    printf("{\"kind\": \"%s\", \"subscribers\": %d, \"variant\": \"%s\", \"ingress\": \"%s\", "
           "\"plain_bytes\": %d, \"srtp_bytes\": %d, \"packets_per_rep\": %d, "
           "\"repetitions\": %d, \"chunk_packets\": %d, \"min_us\": %.4f, \"median_us\": %.4f, "
           "\"max_us\": %.4f, \"samples_us\": [",
           kind->name, n, variant, ingress ? "unprotect" : "none", plain_bytes, srtp_bytes,
           packets, repetitions, chunk, sorted[0], median, sorted[repetitions - 1]);
    for (int r = 0; r < repetitions; r++)
        printf("%s%.4f", r ? ", " : "", samples_us[r]);
    printf("], \"sent\": %lu, \"send_errors\": %lu, \"received\": %lu, \"expected\": %lu",
           sent, failed, received, expected * (unsigned long)n);
    if (debug) {
        printf(", \"publisher_key\": ");
        print_hex(publisher_key, KEY_BYTES);
        printf(", \"payload_pattern\": \"(k + i) & 0xff\", \"last_k\": %lu, \"subscribers_debug\": [", k - 1);
        for (int d = 0; d < n; d++) {
            struct subscriber *s = &subs[d];
            printf("%s{\"ssrc\": %u, \"first_seq\": %u, \"ts_offset\": %u, \"received\": %lu, \"key\": ",
                   d ? ", " : "", s->ssrc, s->first_seq, s->ts_offset, s->received);
            print_hex(s->key, KEY_BYTES);
            printf(", \"last_packet\": ");
            print_hex(s->last, s->last_length);
            putchar('}');
        }
        putchar(']');
    }
    printf("}\n");
    return 0;
}
