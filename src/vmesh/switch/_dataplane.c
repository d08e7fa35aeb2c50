/* vmesh.switch._dataplane: the switch transport's receive-and-forward loop, out of the interpreter.
 *
 * Owns: one thread's loop (DataPlane.run) over the inputs' RTP sockets: epoll_wait and recvmmsg
 * with the GIL released, then, per datagram, the steady-state case of Switch.forward_rtp done
 * in C on the core's own Python objects (_Input/_Output attributes, the GOP cache list), and every
 * copy sent with one sendmmsg (12-byte rewritten header + the shared payload, no copy of it).
 *
 * core.py stays the reference: anything that is not the steady state (first packet, new SSRC,
 * out-of-order or lost-and-confirmed sequence numbers, RTCP on the RTP port, a header with CSRCs,
 * extension or padding, an output pending or unsynced, a held keyframe request, a destination the
 * plane has no address for) is
 * handed to the Python callback `slow(input_id, data, addr, now)`, which runs forward_rtp. The fast
 * path checks everything before it changes anything, and then makes exactly the changes
 * forward_rtp makes (tests/unit/test_switch_dataplane.py runs streams through both and compares
 * every byte sent and every counter). The core is only touched with the GIL and `lock` held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <structmember.h>

#define RBATCH 32
#define RSIZE 65536
#define SBATCH 32 /* at a large fan-out, the first copies leave while the rest are made */
#define MAX_DROPOUT 3000

enum {
    F_ssrc, F_max_seq, F_kf_pending, F_waiting, F_fanout, F_video, F_keytest, F_cycles, F_received, F_packets, F_bytes, F_jit_ts, F_jitter, F_jit_arrival, F_clock, F_cur_ts, F_frame_interval, F_cur_key, F_gop_valid, F_gop, F_gop_bytes, F_frame_start, F_keyframes, F_gop_overflows, F_pending, F_synced, F_history, F_guard, F_dropped, F_last_in_ts, F_mid_frame, F_seq_offset, F_ts_offset, F_pt, F_next_seq, F_last_ts, F_last_sent_at, F_payload_bytes, F_dest, F_send_errors, F_acquire, F_release, F_inputs, F_config, F_gop_cache, F_gop_max_bytes, F_gop_max_packets, F_mask,
    F_peer, F_nack, F_media_ssrc, F_highest, F_seen, F_last_rtp_at,
    NFIELDS
};
static PyObject *names[NFIELDS];

/* Attribute access on the core's objects by __slots__ offset: _Input and _Output have slots, so
 * each (type, name) resolves once to an offset into the object; anything else (the frozen
 * SwitchConfig dataclass) goes through the ordinary attribute protocol. */
typedef struct {
    PyTypeObject *type[2];
    Py_ssize_t off[2];
} SlotCache;
static SlotCache slot_cache[NFIELDS];

static Py_ssize_t slot_offset(PyObject *o, int f) {
    PyTypeObject *t = Py_TYPE(o);
    SlotCache *c = &slot_cache[f];
    for (int i = 0; i < 2; i++)
        if (c->type[i] == t) return c->off[i];
    Py_ssize_t off = -1;
    PyObject *d = _PyType_Lookup(t, names[f]);
    if (d && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) off = m->offset;
    }
    for (int i = 0; i < 2; i++)
        if (c->type[i] == NULL) { /* kept alive, so the address cannot be reused */
            c->type[i] = (PyTypeObject *)Py_NewRef((PyObject *)t);
            c->off[i] = off;
            break;
        }
    return off;
}

/* new reference, NULL with an exception set if missing */
static PyObject *getf(PyObject *o, int f) {
    Py_ssize_t off = slot_offset(o, f);
    if (off < 0) return PyObject_GetAttr(o, names[f]);
    PyObject *v = *(PyObject **)((char *)o + off);
    if (!v) { PyErr_SetObject(PyExc_AttributeError, names[f]); return NULL; }
    return Py_NewRef(v);
}

static int setf(PyObject *o, int f, PyObject *v) {
    Py_ssize_t off = slot_offset(o, f);
    if (off < 0) return PyObject_SetAttr(o, names[f], v);
    PyObject **p = (PyObject **)((char *)o + off);
    Py_XSETREF(*p, Py_NewRef(v));
    return 0;
}


typedef struct {
    PyObject_HEAD
    int epfd;
    int out_fd;
    PyObject *sw;        /* the Switch */
    PyObject *lock;      /* threading.Lock shared with the control plane */
    PyObject *slow;      /* callable(input_id, data, addr, now) */
    PyObject *tick;      /* callable(now) */
    PyObject *fds;       /* {fd: input_id} */
    PyObject *addrs;     /* {dest token: bytes(sockaddr_in) [+ int: the fd to send it from]} */
    PyObject *relays;    /* {fd: (bytes(sockaddr_in) of the switch input, lo fd, link, slow)} */
    unsigned long long relayed;
    double tick_interval;
    volatile int stop;
    unsigned long long fast, slowed;
    /* send batch */
    int ns;
    struct mmsghdr smsg[SBATCH];
    struct iovec siov[SBATCH][2];
    unsigned char shdr[SBATCH][12];
    PyObject *sout[SBATCH];   /* the output of each copy (strong ref), for send_errors */
    int sfd[SBATCH];          /* the socket each copy leaves from */
    /* receive batch */
    struct mmsghdr rmsg[RBATCH];
    struct iovec riov[RBATCH];
    struct sockaddr_in6 raddr[RBATCH];
    unsigned char *rbuf;
} DataPlane;

/* -- small helpers on the core's objects ----------------------------------------------------- */

static int get_ll(PyObject *o, int name, long long *v) {
    PyObject *x = getf(o, name);
    if (!x) return -1;
    *v = PyLong_AsLongLong(x);
    Py_DECREF(x);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* an int attribute that may be None: returns 1 if None */
static int get_opt(PyObject *o, int name, long long *v) {
    PyObject *x = getf(o, name);
    if (!x) return -1;
    if (x == Py_None) { Py_DECREF(x); return 1; }
    *v = PyLong_AsLongLong(x);
    Py_DECREF(x);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int get_bool(PyObject *o, int name) {
    PyObject *x = getf(o, name);
    if (!x) return -1;
    int r = PyObject_IsTrue(x);
    Py_DECREF(x);
    return r;
}

static int get_d(PyObject *o, int name, double *v) {
    PyObject *x = getf(o, name);
    if (!x) return -1;
    *v = PyFloat_AsDouble(x);
    Py_DECREF(x);
    return (*v == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int set_ll(PyObject *o, int name, long long v) {
    PyObject *x = PyLong_FromLongLong(v);
    if (!x) return -1;
    int r = setf(o, name, x);
    Py_DECREF(x);
    return r;
}

static int set_d(PyObject *o, int name, double v) {
    PyObject *x = PyFloat_FromDouble(v);
    if (!x) return -1;
    int r = setf(o, name, x);
    Py_DECREF(x);
    return r;
}

static int add_ll(PyObject *o, int name, long long d) {
    long long v;
    if (get_ll(o, name, &v) < 0) return -1;
    return set_ll(o, name, v + d);
}

/* codecs.starts_keyframe on a payload of n >= 3 bytes, aggregation packets included (a
 * keyframe's first packet is often a STAP-A/AP with the parameter sets: kept on the fast path) */
static int h264_key(int t) { return t == 5 || t == 7; }

static int is_key_h264(const unsigned char *p, Py_ssize_t n) {
    int t = p[0] & 0x1F;
    if (t == 28) return (p[1] & 0x80) && h264_key(p[1] & 0x1F);
    if (t >= 1 && t <= 23) return h264_key(t);
    if (t != 24) return 0;
    for (Py_ssize_t pos = 1; pos + 2 < n;) { /* STAP-A: 16-bit size, NAL unit, ... */
        Py_ssize_t size = (p[pos] << 8) | p[pos + 1];
        if (size == 0 || pos + 2 + size > n) return 0;
        if (h264_key(p[pos + 2] & 0x1F)) return 1;
        pos += 2 + size;
    }
    return 0;
}

static int h265_key(int t) { return (t >= 16 && t <= 21) || (t >= 32 && t <= 34); }

static int is_key_h265(const unsigned char *p, Py_ssize_t n) {
    int t = (p[0] >> 1) & 0x3F;
    if (t == 49) return (p[2] & 0x80) && h265_key(p[2] & 0x3F);
    if (t != 48) return h265_key(t);
    for (Py_ssize_t pos = 2; pos + 3 < n;) { /* AP: 16-bit size, NAL unit, ... */
        Py_ssize_t size = (p[pos] << 8) | p[pos + 1];
        if (size < 2 || pos + 2 + size > n) return 0;
        if (h265_key((p[pos + 2] >> 1) & 0x3F)) return 1;
        pos += 2 + size;
    }
    return 0;
}

/* -- sending ----------------------------------------------------------------------------------- */

/* Sent with the GIL held. Letting it go for a long send (as before 2026-11-30) meant taking it
 * back mid-fan-out: at fan-out 100 three times per packet, and each time another thread running
 * Python (the node's event loop) could keep it for up to the switch interval, measured 0.6-1.4 ms
 * p99 (max 4.6 ms) of waits per packet with a busy Python thread beside the plane
 * (docs/switch.md, "The latency tail"). The plane lets the GIL go only in epoll_wait. */
static void flush(DataPlane *self) {
    int i = 0;
    while (i < self->ns) {
        int fd = self->sfd[i], j = i + 1; /* a run of copies that leave from one socket */
        while (j < self->ns && self->sfd[j] == fd) j++;
        int r = sendmmsg(fd, self->smsg + i, (unsigned)(j - i), MSG_DONTWAIT);
        if (r > 0) { i += r; continue; }
        if (r < 0 && errno == EINTR) continue;
        /* the copy at i failed (full buffer, ICMP error): UDP drops it; count it */
        if (add_ll(self->sout[i], F_send_errors, 1) < 0) PyErr_Clear();
        i++;
    }
    for (i = 0; i < self->ns; i++) Py_CLEAR(self->sout[i]);
    self->ns = 0;
}

/* -- the fast path: 1 done, 0 not the steady state (nothing changed), -1 error ------------------ */

static int fast_forward(DataPlane *self, PyObject *inp, PyObject *cfg, unsigned char *data,
                        Py_ssize_t n, double now) {
    if (n < 12 || data[0] != 0x80 || (data[1] >= 192 && data[1] <= 223)) return 0;
    int b1 = data[1];
    long long seq = (data[2] << 8) | data[3];
    long long ts = ((long long)data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7];
    long long ssrc = ((long long)data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11];
    long long v, max_seq;
    int r = get_opt(inp, F_ssrc, &v);
    if (r != 0 || v != ssrc) return r < 0 ? -1 : 0;
    r = get_opt(inp, F_max_seq, &max_seq);
    if (r != 0) return r < 0 ? -1 : 0;
    long long d = (seq - max_seq) & 0xFFFF;
    if (!(d > 0 && d < MAX_DROPOUT)) return 0;
    if ((r = get_bool(inp, F_kf_pending)) != 0) return r < 0 ? -1 : 0;
    if ((r = get_bool(inp, F_waiting)) != 0) return r < 0 ? -1 : 0;
    int video = get_bool(inp, F_video);
    if (video < 0) return -1;
    Py_ssize_t start = 12, plen = n - 12;
    int key = 0;
    if (video) {
        long long kt;
        if (plen < 3 || get_ll(inp, F_keytest, &kt) < 0) return plen < 3 ? 0 : -1;
        if (kt == 1) key = is_key_h264(data + start, plen);
        else if (kt == 2) key = is_key_h265(data + start, plen);
        else return 0;
    }
    PyObject *fanout = getf(inp, F_fanout);
    if (!fanout) return -1;
    if (!PyTuple_Check(fanout)) { Py_DECREF(fanout); return 0; }
    Py_ssize_t nf = PyTuple_GET_SIZE(fanout);
    int ok = 1;
    for (Py_ssize_t i = 0; i < nf && ok; i++) {
        PyObject *o = PyTuple_GET_ITEM(fanout, i);
        PyObject *x = getf(o, F_pending);
        if (!x) { Py_DECREF(fanout); return -1; }
        ok = x == Py_None;
        Py_DECREF(x);
        if (!ok) break;
        r = get_bool(o, F_synced);
        if (r < 0) { Py_DECREF(fanout); return -1; }
        ok = r;
        if (!ok) break;
        x = getf(o, F_history);
        if (!x) { Py_DECREF(fanout); return -1; }
        ok = x == Py_None || PyList_CheckExact(x);
        Py_DECREF(x);
        if (!ok) break;
        x = getf(o, F_dest);
        if (!x) { Py_DECREF(fanout); return -1; }
        PyObject *a = PyDict_GetItemWithError(self->addrs, x);
        Py_DECREF(x);
        if (!a && PyErr_Occurred()) { Py_DECREF(fanout); return -1; }
        ok = a != NULL;
    }
    if (!ok) { Py_DECREF(fanout); return 0; }
    PyObject *datab = NULL;
    long long cur_ts = 0;
    int cur_none = 0, cur_key = 0;
    if (video) {
        if ((cur_none = get_opt(inp, F_cur_ts, &cur_ts)) < 0) goto error;
        if ((cur_key = get_bool(inp, F_cur_key)) < 0) goto error;
    }
    /* -- from here on, the changes forward_rtp makes -- */
    if (seq < max_seq && add_ll(inp, F_cycles, 0x10000) < 0) goto error;
    if (set_ll(inp, F_max_seq, seq) < 0 || add_ll(inp, F_received, 1) < 0) goto error;
    if (add_ll(inp, F_packets, 1) < 0 || add_ll(inp, F_bytes, n) < 0) goto error;
    long long jit_ts;
    if ((r = get_opt(inp, F_jit_ts, &jit_ts)) < 0) goto error;
    if (r == 1 || ts != jit_ts) {
        long long clock;
        if (get_ll(inp, F_clock, &clock) < 0) goto error;
        double arrival = now * (double)clock;
        if (r == 0) {
            double jitter, jit_arrival;
            if (get_d(inp, F_jitter, &jitter) < 0 || get_d(inp, F_jit_arrival, &jit_arrival) < 0)
                goto error;
            long long dts = ((ts - jit_ts + 0x80000000LL) & 0xFFFFFFFFLL) - 0x80000000LL;
            jitter += (fabs(arrival - jit_arrival - (double)dts) - jitter) / 16;
            if (set_d(inp, F_jitter, jitter) < 0) goto error;
        }
        if (set_ll(inp, F_jit_ts, ts) < 0 || set_d(inp, F_jit_arrival, arrival) < 0) goto error;
    }
    if (video) { /* Switch._cache */
        PyObject *gop = getf(inp, F_gop);
        if (!gop) goto error;
        if (!PyList_Check(gop)) { Py_DECREF(gop); PyErr_SetString(PyExc_TypeError, "gop"); goto error; }
        if (cur_none || ts != cur_ts) {
            if (!cur_none) {
                long long clock, dts = (ts - cur_ts) & 0xFFFFFFFFLL;
                if (get_ll(inp, F_clock, &clock) < 0) { Py_DECREF(gop); goto error; }
                if (dts > 0 && dts < clock && set_ll(inp, F_frame_interval, dts) < 0) {
                    Py_DECREF(gop); goto error;
                }
            }
            if (set_ll(inp, F_cur_ts, ts) < 0) { Py_DECREF(gop); goto error; }
            cur_key = 0;
            if (setf(inp, F_cur_key, Py_False) < 0) { Py_DECREF(gop); goto error; }
            int valid = get_bool(inp, F_gop_valid);
            int use = get_bool(cfg, F_gop_cache);
            if (valid < 0 || use < 0) { Py_DECREF(gop); goto error; }
            if (!valid || !use) {
                if (PyList_SetSlice(gop, 0, PyList_GET_SIZE(gop), NULL) < 0 ||
                    set_ll(inp, F_gop_bytes, 0) < 0 ||
                    setf(inp, F_gop_valid, Py_False) < 0) { Py_DECREF(gop); goto error; }
            }
            if (set_ll(inp, F_frame_start, PyList_GET_SIZE(gop)) < 0) { Py_DECREF(gop); goto error; }
        }
        if (!cur_key && key) {
            long long fs;
            if (get_ll(inp, F_frame_start, &fs) < 0) { Py_DECREF(gop); goto error; }
            if (fs) {
                long long drop = 0;
                for (Py_ssize_t i = 0; i < fs && i < PyList_GET_SIZE(gop); i++) {
                    PyObject *e = PyList_GET_ITEM(gop, i);
                    drop += PyObject_Length(PyTuple_GET_ITEM(e, 2));
                }
                if (PyList_SetSlice(gop, 0, (Py_ssize_t)fs, NULL) < 0 ||
                    add_ll(inp, F_gop_bytes, -drop) < 0 || set_ll(inp, F_frame_start, 0) < 0) {
                    Py_DECREF(gop); goto error;
                }
            }
            if (setf(inp, F_gop_valid, Py_True) < 0 ||
                setf(inp, F_cur_key, Py_True) < 0 || add_ll(inp, F_keyframes, 1) < 0 ||
                setf(inp, F_kf_pending, Py_False) < 0) { Py_DECREF(gop); goto error; }
        }
        datab = PyBytes_FromStringAndSize((const char *)data, n);
        if (!datab) { Py_DECREF(gop); goto error; }
        PyObject *e = Py_BuildValue("(LLOn)", seq, ts, datab, plen);
        if (!e || PyList_Append(gop, e) < 0) { Py_XDECREF(e); Py_DECREF(gop); goto error; }
        Py_DECREF(e);
        if (add_ll(inp, F_gop_bytes, n) < 0) { Py_DECREF(gop); goto error; }
        int valid = get_bool(inp, F_gop_valid);
        long long gb, mb, mp;
        if (valid < 0 || get_ll(inp, F_gop_bytes, &gb) < 0 || get_ll(cfg, F_gop_max_bytes, &mb) < 0 ||
            get_ll(cfg, F_gop_max_packets, &mp) < 0) { Py_DECREF(gop); goto error; }
        if (valid && (gb > mb || PyList_GET_SIZE(gop) > mp)) {
            if (add_ll(inp, F_gop_overflows, 1) < 0 ||
                PyList_SetSlice(gop, 0, PyList_GET_SIZE(gop), NULL) < 0 ||
                set_ll(inp, F_gop_bytes, 0) < 0 || setf(inp, F_gop_valid, Py_False) < 0 ||
                set_ll(inp, F_frame_start, 0) < 0) { Py_DECREF(gop); goto error; }
        }
        Py_DECREF(gop);
    }
    int marker = (b1 & 0x80) != 0;
    PyObject *nowf = PyFloat_FromDouble(now);
    if (!nowf) goto error;
    for (Py_ssize_t i = 0; i < nf; i++) {
        PyObject *o = PyTuple_GET_ITEM(fanout, i);
        long long guard, so, tso, nseq, ossrc, pt;
        if (get_ll(o, F_guard, &guard) < 0) goto error_now;
        long long g = (seq - guard) & 0xFFFF;
        if (g >= 0x8000) { if (add_ll(o, F_dropped, 1) < 0) goto error_now; continue; }
        if (g > 0x4000 && set_ll(o, F_guard, (seq - 0x2000) & 0xFFFF) < 0) goto error_now;
        if (set_ll(o, F_last_in_ts, ts) < 0) goto error_now;
        if (video && setf(o, F_mid_frame, marker ? Py_False : Py_True) < 0)
            goto error_now;
        if (get_ll(o, F_seq_offset, &so) < 0 || get_ll(o, F_ts_offset, &tso) < 0 ||
            get_ll(o, F_next_seq, &nseq) < 0 || get_ll(o, F_ssrc, &ossrc) < 0) goto error_now;
        if ((r = get_opt(o, F_pt, &pt)) < 0) goto error_now;
        int ob1 = r == 1 ? b1 : ((b1 & 0x80) | (int)pt);
        long long oseq = (seq + so) & 0xFFFF, ots = (ts + tso) & 0xFFFFFFFFLL;
        if (((oseq - nseq) & 0xFFFF) < 0x8000) {
            if (set_ll(o, F_next_seq, (oseq + 1) & 0xFFFF) < 0 || set_ll(o, F_last_ts, ots) < 0 ||
                setf(o, F_last_sent_at, nowf) < 0) goto error_now;
        }
        if (add_ll(o, F_packets, 1) < 0 || add_ll(o, F_bytes, n) < 0 ||
            add_ll(o, F_payload_bytes, plen) < 0) goto error_now;
        PyObject *dest = getf(o, F_dest);
        if (!dest) goto error_now;
        PyObject *a = PyDict_GetItemWithError(self->addrs, dest);
        Py_DECREF(dest);
        if (!a) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "dest"); goto error_now; }
        if (self->ns == SBATCH) flush(self);
        int k = self->ns++;
        unsigned char *h = self->shdr[k];
        h[0] = data[0]; h[1] = (unsigned char)ob1;
        h[2] = (unsigned char)(oseq >> 8); h[3] = (unsigned char)oseq;
        h[4] = (unsigned char)(ots >> 24); h[5] = (unsigned char)(ots >> 16);
        h[6] = (unsigned char)(ots >> 8); h[7] = (unsigned char)ots;
        h[8] = (unsigned char)(ossrc >> 24); h[9] = (unsigned char)(ossrc >> 16);
        h[10] = (unsigned char)(ossrc >> 8); h[11] = (unsigned char)ossrc;
        PyObject *hist = getf(o, F_history);
        if (!hist) { self->ns--; goto error_now; }
        if (hist != Py_None) { /* the output answers NACKs: keep the copy as sent */
            long long mask;
            PyObject *kept = NULL;
            if (get_ll(o, F_mask, &mask) < 0 || !PyList_CheckExact(hist) ||
                (oseq & mask) >= PyList_GET_SIZE(hist) ||
                !(kept = PyBytes_FromStringAndSize(NULL, n))) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "history");
                Py_DECREF(hist); self->ns--; goto error_now;
            }
            memcpy(PyBytes_AS_STRING(kept), h, 12);
            memcpy(PyBytes_AS_STRING(kept) + 12, data + 12, (size_t)(n - 12));
            PyList_SetItem(hist, (Py_ssize_t)(oseq & mask), kept); /* steals kept */
        }
        Py_DECREF(hist);
        self->siov[k][0].iov_base = h; self->siov[k][0].iov_len = 12;
        self->siov[k][1].iov_base = data + 12; self->siov[k][1].iov_len = (size_t)(n - 12);
        memset(&self->smsg[k].msg_hdr, 0, sizeof(struct msghdr));
        self->smsg[k].msg_hdr.msg_name = PyBytes_AS_STRING(a);
        self->smsg[k].msg_hdr.msg_namelen = (socklen_t)sizeof(struct sockaddr_in);
        self->sfd[k] = self->out_fd;
        if (PyBytes_GET_SIZE(a) > (Py_ssize_t)sizeof(struct sockaddr_in))
            memcpy(&self->sfd[k], PyBytes_AS_STRING(a) + sizeof(struct sockaddr_in), sizeof(int));
        self->smsg[k].msg_hdr.msg_iov = self->siov[k];
        self->smsg[k].msg_hdr.msg_iovlen = 2;
        Py_INCREF(o);
        self->sout[k] = o;
    }
    Py_DECREF(nowf);
    Py_DECREF(fanout);
    Py_XDECREF(datab);
    return 1;
error_now:
    Py_DECREF(nowf);
error:
    Py_DECREF(fanout);
    Py_XDECREF(datab);
    return -1;
}

/* -- the object ---------------------------------------------------------------------------------- */

static double wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int DataPlane_init(DataPlane *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"switch", "out_fd", "lock", "slow", "tick", "tick_interval", NULL};
    PyObject *sw, *lock, *slow, *tick;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OiOOOd", kwlist, &sw, &self->out_fd, &lock, &slow,
                                     &tick, &self->tick_interval))
        return -1;
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    self->rbuf = PyMem_RawMalloc((size_t)RBATCH * RSIZE);
    if (!self->rbuf) { PyErr_NoMemory(); return -1; }
    for (int i = 0; i < RBATCH; i++) {
        self->riov[i].iov_base = self->rbuf + (size_t)i * RSIZE;
        self->riov[i].iov_len = RSIZE;
    }
    Py_INCREF(sw); self->sw = sw;
    Py_INCREF(lock); self->lock = lock;
    Py_INCREF(slow); self->slow = slow;
    Py_INCREF(tick); self->tick = tick;
    self->fds = PyDict_New();
    self->addrs = PyDict_New();
    self->relays = PyDict_New();
    return (self->fds && self->addrs && self->relays) ? 0 : -1;
}

static void DataPlane_dealloc(DataPlane *self) {
    for (int i = 0; i < self->ns; i++) Py_CLEAR(self->sout[i]);
    if (self->epfd > 0) close(self->epfd);
    if (self->rbuf) PyMem_RawFree(self->rbuf);
    Py_XDECREF(self->sw); Py_XDECREF(self->lock); Py_XDECREF(self->slow);
    Py_XDECREF(self->tick); Py_XDECREF(self->fds); Py_XDECREF(self->addrs);
    Py_XDECREF(self->relays);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *DataPlane_add(DataPlane *self, PyObject *args) {
    int fd;
    PyObject *input_id;
    if (!PyArg_ParseTuple(args, "iU", &fd, &input_id)) return NULL;
    PyObject *k = PyLong_FromLong(fd);
    if (!k || PyDict_SetItem(self->fds, k, input_id) < 0) { Py_XDECREF(k); return NULL; }
    Py_DECREF(k);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *DataPlane_discard(DataPlane *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd)) return NULL;
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
    PyObject *k = PyLong_FromLong(fd);
    if (!k) return NULL;
    if (PyDict_DelItem(self->fds, k) < 0) PyErr_Clear();
    if (PyDict_DelItem(self->relays, k) < 0) PyErr_Clear();
    Py_DECREF(k);
    Py_RETURN_NONE;
}

static PyObject *DataPlane_set_dest(DataPlane *self, PyObject *args) {
    PyObject *dest;
    const char *host;
    int port, fd = -1;
    if (!PyArg_ParseTuple(args, "Osi|i", &dest, &host, &port, &fd)) return NULL;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        if (PyDict_DelItem(self->addrs, dest) < 0) PyErr_Clear(); /* not IPv4: Python sends it */
        Py_RETURN_NONE;
    }
    /* with fd >= 0, copies to dest leave from that socket (a fabric link's end facing the
     * neighbour), else from out_fd */
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(sizeof sa + (fd >= 0 ? sizeof fd : 0)));
    if (!b) return NULL;
    memcpy(PyBytes_AS_STRING(b), &sa, sizeof sa);
    if (fd >= 0) memcpy(PyBytes_AS_STRING(b) + sizeof sa, &fd, sizeof fd);
    if (PyDict_SetItem(self->addrs, dest, b) < 0) { Py_DECREF(b); return NULL; }
    Py_DECREF(b);
    Py_RETURN_NONE;
}

static PyObject *DataPlane_forget_dest(DataPlane *self, PyObject *dest) {
    if (PyDict_DelItem(self->addrs, dest) < 0) PyErr_Clear();
    Py_RETURN_NONE;
}

static PyObject *addr_tuple(struct sockaddr_in6 *sa) {
    char host[INET6_ADDRSTRLEN];
    if (sa->sin6_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, ntohs(s4->sin_port));
    }
    inet_ntop(AF_INET6, &sa->sin6_addr, host, sizeof host);
    return Py_BuildValue("(si)", host, ntohs(sa->sin6_port));
}

/* -- fabric link relays ---------------------------------------------------------------------------
 * A LinkIn (vmesh.fabric.links) facing a neighbour: its datagrams go on to the stream's switch input
 * on loopback. The steady state — RTP from the link's peer, the sender the LinkIn's NackRequester
 * knows, the next sequence number — is relayed here, making exactly the changes LinkIn._from_peer
 * makes for it (last_rtp_at; the requester's highest, _seen, packets, bytes); anything else
 * (a gap to NACK, a retransmission, a duplicate, a new sender, another address, a malformed
 * datagram) goes to `slow(data, addr)`, which is LinkIn._from_peer itself. RTCP from the upstream
 * is dropped, as there. */

static PyObject *DataPlane_add_relay(DataPlane *self, PyObject *args) {
    int fd, lo_fd, port;
    const char *host;
    PyObject *link, *slow;
    if (!PyArg_ParseTuple(args, "isiiOO", &fd, &host, &port, &lo_fd, &link, &slow)) return NULL;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        PyErr_Format(PyExc_ValueError, "relay target must be IPv4 host and port, got %s:%d", host, port);
        return NULL;
    }
    PyObject *v = Py_BuildValue("(y#iOO)", (const char *)&sa, (Py_ssize_t)sizeof sa, lo_fd, link, slow);
    PyObject *k = PyLong_FromLong(fd);
    if (!v || !k || PyDict_SetItem(self->relays, k, v) < 0) { Py_XDECREF(v); Py_XDECREF(k); return NULL; }
    Py_DECREF(v);
    Py_DECREF(k);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *addr_tuple(struct sockaddr_in6 *sa);

/* 1 relayed state updated (the caller sends), 0 not the steady state (nothing changed), -1 error */
static int relay_fast(PyObject *link, const unsigned char *data, Py_ssize_t n,
                      struct sockaddr_in6 *from, double now) {
    if (n < 12 || (data[0] & 0xC0) != 0x80) return 0;
    long long seq = (data[2] << 8) | data[3];
    long long ssrc = ((long long)data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11];
    int rc = -1;
    PyObject *peer = NULL, *nack = NULL, *ms = NULL, *hi = NULL, *seen = NULL, *t = NULL;
    if (!(peer = PyObject_GetAttr(link, names[F_peer]))) goto done;
    if (peer != Py_None) {
        PyObject *a = addr_tuple(from);
        if (!a) goto done;
        int eq = PyObject_RichCompareBool(a, peer, Py_EQ);
        Py_DECREF(a);
        if (eq < 0) goto done;
        if (!eq) { rc = 0; goto done; }
    }
    if (!(nack = PyObject_GetAttr(link, names[F_nack]))) goto done;
    if (!(ms = PyObject_GetAttr(nack, names[F_media_ssrc]))) goto done;
    if (!(hi = PyObject_GetAttr(nack, names[F_highest]))) goto done;
    rc = 0;
    if (!PyLong_Check(ms) || !PyLong_Check(hi)) goto done;
    long long m = PyLong_AsLongLong(ms), h = PyLong_AsLongLong(hi);
    if (PyErr_Occurred()) { rc = -1; goto done; }
    if (m != ssrc || seq != ((h + 1) & 0xFFFF)) goto done;
    rc = -1;
    if (!(seen = PyObject_GetAttr(nack, names[F_seen]))) goto done;
    if (!PyList_CheckExact(seen) || PyList_GET_SIZE(seen) != 1024) { rc = 0; goto done; }
    /* -- from here on, the changes _from_peer makes -- */
    if (!(t = PyFloat_FromDouble(now)) || PyObject_SetAttr(link, names[F_last_rtp_at], t) < 0) goto done;
    PyObject *sq = PyLong_FromLongLong(seq);
    if (!sq) goto done;
    Py_INCREF(sq);
    PyList_SetItem(seen, (Py_ssize_t)(seq % 1024), sq); /* steals one reference */
    int bad = PyObject_SetAttr(nack, names[F_highest], sq) < 0;
    Py_DECREF(sq);
    if (bad) goto done;
    PyObject *p = PyObject_GetAttr(nack, names[F_packets]), *b = PyObject_GetAttr(nack, names[F_bytes]);
    if (p && b) {
        PyObject *p1 = PyLong_FromLongLong(PyLong_AsLongLong(p) + 1);
        PyObject *b1 = PyLong_FromLongLong(PyLong_AsLongLong(b) + n);
        if (p1 && b1 && !PyErr_Occurred() && PyObject_SetAttr(nack, names[F_packets], p1) == 0 &&
            PyObject_SetAttr(nack, names[F_bytes], b1) == 0)
            rc = 1;
        Py_XDECREF(p1); Py_XDECREF(b1);
    }
    Py_XDECREF(p); Py_XDECREF(b);
done:
    Py_XDECREF(peer); Py_XDECREF(nack); Py_XDECREF(ms); Py_XDECREF(hi); Py_XDECREF(seen); Py_XDECREF(t);
    return rc;
}

/* one batch from a relay's socket, with the GIL and the lock held */
static void relay_batch(DataPlane *self, PyObject *entry, int count, double now) {
    PyObject *sa = PyTuple_GET_ITEM(entry, 0), *link = PyTuple_GET_ITEM(entry, 2);
    PyObject *slow = PyTuple_GET_ITEM(entry, 3);
    int lo_fd = (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
    for (int i = 0; i < count; i++) {
        unsigned char *data = self->rbuf + (size_t)i * RSIZE;
        Py_ssize_t n = self->rmsg[i].msg_len;
        int trunc = (self->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        if (!trunc && n >= 2 && data[1] >= 192 && data[1] <= 223) continue; /* RTCP: dropped */
        int r = trunc ? 0 : relay_fast(link, data, n, &self->raddr[i], now);
        if (r == 1) {
            self->relayed++;
            sendto(lo_fd, data, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)PyBytes_AS_STRING(sa),
                   (socklen_t)PyBytes_GET_SIZE(sa)); /* UDP: a full buffer loses it, as any copy */
            continue;
        }
        if (r < 0) { PyErr_WriteUnraisable(slow); continue; }
        PyObject *b = PyBytes_FromStringAndSize((const char *)data, n);
        PyObject *a = addr_tuple(&self->raddr[i]);
        PyObject *res = (b && a) ? PyObject_CallFunctionObjArgs(slow, b, a, NULL) : NULL;
        Py_XDECREF(b); Py_XDECREF(a);
        if (!res) PyErr_WriteUnraisable(slow);
        Py_XDECREF(res);
    }
}

/* one batch of datagrams from one input, with the GIL and the lock held */
static int handle(DataPlane *self, PyObject *input_id, int count, double now) {
    PyObject *inputs = getf(self->sw, F_inputs);
    if (!inputs) return -1;
    PyObject *inp = PyDict_GetItemWithError(inputs, input_id);
    Py_XINCREF(inp);
    Py_DECREF(inputs);
    if (!inp) return PyErr_Occurred() ? -1 : 0; /* removed meanwhile */
    PyObject *cfg = getf(self->sw, F_config);
    if (!cfg) { Py_DECREF(inp); return -1; }
    int rc = 0;
    for (int i = 0; i < count; i++) {
        unsigned char *data = self->rbuf + (size_t)i * RSIZE;
        Py_ssize_t n = self->rmsg[i].msg_len;
        int r = 0;
        if (!(self->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC)) r = fast_forward(self, inp, cfg, data, n, now);
        if (r == 1) { self->fast++; continue; }
        if (r < 0) { PyErr_WriteUnraisable(self->slow); continue; } /* dropped, never twice */
        self->slowed++;
        flush(self); /* keep the order of copies */
        PyObject *b = PyBytes_FromStringAndSize((const char *)data, n);
        PyObject *a = addr_tuple(&self->raddr[i]);
        PyObject *res = (b && a) ? PyObject_CallFunction(self->slow, "OOOd", input_id, b, a, now) : NULL;
        Py_XDECREF(b); Py_XDECREF(a);
        if (!res) PyErr_WriteUnraisable(self->slow);
        Py_XDECREF(res);
    }
    flush(self);
    Py_DECREF(cfg);
    Py_DECREF(inp);
    return rc;
}

static PyObject *DataPlane_run(DataPlane *self, PyObject *noargs) {
    struct epoll_event evs[16];
    double next_tick = 0;
    /* the thread's name in ps -L, top -H, perf and /proc (chrt -p, taskset -p find it by it) */
    prctl(PR_SET_NAME, "vmesh-dataplane", 0, 0, 0);
    while (!self->stop) {
        double now = wall();
        int timeout = next_tick > now ? (int)ceil((next_tick - now) * 1000) : 0;
        if (timeout > 100) timeout = 100;
        int nev;
        Py_BEGIN_ALLOW_THREADS
        nev = epoll_wait(self->epfd, evs, 16, timeout);
        Py_END_ALLOW_THREADS
        if (nev < 0 && errno != EINTR) return PyErr_SetFromErrno(PyExc_OSError);
        for (int e = 0; e < nev && !self->stop; e++) {
            int fd = evs[e].data.fd;
            for (;;) {
                for (int i = 0; i < RBATCH; i++) {
                    memset(&self->rmsg[i].msg_hdr, 0, sizeof(struct msghdr));
                    self->rmsg[i].msg_hdr.msg_name = &self->raddr[i];
                    self->rmsg[i].msg_hdr.msg_namelen = sizeof self->raddr[i];
                    self->rmsg[i].msg_hdr.msg_iov = &self->riov[i];
                    self->rmsg[i].msg_hdr.msg_iovlen = 1;
                }
                /* non-blocking: no need to let the GIL go for it */
                int cnt = recvmmsg(fd, self->rmsg, RBATCH, MSG_DONTWAIT, NULL);
                if (cnt <= 0) break;
                now = wall();
                PyObject *got = PyObject_CallMethodNoArgs(self->lock, names[F_acquire]);
                if (!got) return NULL;
                Py_DECREF(got);
                PyObject *k = PyLong_FromLong(fd);
                PyObject *input_id = k ? PyDict_GetItemWithError(self->fds, k) : NULL;
                PyObject *relay = (k && !input_id && !PyErr_Occurred())
                                      ? PyDict_GetItemWithError(self->relays, k) : NULL;
                Py_XDECREF(k);
                int r = 0;
                if (input_id) {
                    Py_INCREF(input_id);
                    r = handle(self, input_id, cnt, now);
                    Py_DECREF(input_id);
                } else if (relay) {
                    Py_INCREF(relay);
                    relay_batch(self, relay, cnt, now);
                    Py_DECREF(relay);
                }
                PyObject *rel = PyObject_CallMethodNoArgs(self->lock, names[F_release]);
                if (!rel) return NULL;
                if (r < 0 || PyErr_Occurred()) PyErr_WriteUnraisable(self->slow);
                Py_DECREF(rel);
                if (cnt < RBATCH) break;
            }
        }
        now = wall();
        if (now >= next_tick && !self->stop) {
            next_tick = now + self->tick_interval;
            PyObject *res = PyObject_CallFunction(self->tick, "d", now);
            if (!res) PyErr_WriteUnraisable(self->tick);
            Py_XDECREF(res);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *DataPlane_stop(DataPlane *self, PyObject *noargs) {
    self->stop = 1;
    Py_RETURN_NONE;
}

static PyObject *DataPlane_counts(DataPlane *self, PyObject *noargs) {
    return Py_BuildValue("(KK)", self->fast, self->slowed);
}

static PyObject *DataPlane_relayed(DataPlane *self, PyObject *noargs) {
    return PyLong_FromUnsignedLongLong(self->relayed);
}

static PyMethodDef DataPlane_methods[] = {
    {"add", (PyCFunction)DataPlane_add, METH_VARARGS, "add(fd, input_id): receive an input's RTP"},
    {"discard", (PyCFunction)DataPlane_discard, METH_VARARGS, "discard(fd): stop receiving on fd"},
    {"set_dest", (PyCFunction)DataPlane_set_dest, METH_VARARGS,
     "set_dest(token, host, port): the IPv4 address copies for this destination token go to"},
    {"forget_dest", (PyCFunction)DataPlane_forget_dest, METH_O, "forget_dest(token)"},
    {"run", (PyCFunction)DataPlane_run, METH_NOARGS, "the loop; returns after stop()"},
    {"stop", (PyCFunction)DataPlane_stop, METH_NOARGS, "make run() return within 100 ms"},
    {"counts", (PyCFunction)DataPlane_counts, METH_NOARGS, "(fast, slow) datagrams so far"},
    {"add_relay", (PyCFunction)DataPlane_add_relay, METH_VARARGS,
     "add_relay(fd, host, port, lo_fd, link, slow): relay a fabric LinkIn's datagrams"},
    {"relayed", (PyCFunction)DataPlane_relayed, METH_NOARGS, "datagrams relayed in C so far"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject DataPlaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vmesh.switch._dataplane.DataPlane",
    .tp_basicsize = sizeof(DataPlane),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)DataPlane_init,
    .tp_dealloc = (destructor)DataPlane_dealloc,
    .tp_methods = DataPlane_methods,
    .tp_doc = "DataPlane(switch, out_fd, lock, slow, tick, tick_interval)",
};

/* The fast path on one datagram, for tests: returns the copies (dest, bytes) it would send, or
 * None if the datagram is not the steady state (then nothing was changed). */
static PyObject *DataPlane_forward_for_test(PyObject *mod, PyObject *args) {
    DataPlane *self;
    PyObject *input_id;
    Py_buffer buf;
    double now;
    if (!PyArg_ParseTuple(args, "O!Uy*d", &DataPlaneType, &self, &input_id, &buf, &now)) return NULL;
    PyObject *inputs = getf(self->sw, F_inputs);
    PyObject *inp = inputs ? PyDict_GetItemWithError(inputs, input_id) : NULL;
    Py_XINCREF(inp);
    Py_XDECREF(inputs);
    PyObject *cfg = inp ? getf(self->sw, F_config) : NULL;
    if (!cfg) { Py_XDECREF(inp); PyBuffer_Release(&buf); if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, input_id); return NULL; }
    unsigned char *copy = PyMem_Malloc(buf.len ? buf.len : 1);
    memcpy(copy, buf.buf, buf.len);
    int r = fast_forward(self, inp, cfg, copy, buf.len, now);
    Py_DECREF(cfg); Py_DECREF(inp); PyBuffer_Release(&buf);
    PyObject *out = NULL;
    if (r == 1) {
        out = PyList_New(0);
        for (int k = 0; out && k < self->ns; k++) {
            struct msghdr *m = &self->smsg[k].msg_hdr;
            PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(12 + m->msg_iov[1].iov_len));
            memcpy(PyBytes_AS_STRING(b), m->msg_iov[0].iov_base, 12);
            memcpy(PyBytes_AS_STRING(b) + 12, m->msg_iov[1].iov_base, m->msg_iov[1].iov_len);
            struct sockaddr_in *sa = (struct sockaddr_in *)m->msg_name;
            char host[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &sa->sin_addr, host, sizeof host);
            PyObject *t = Py_BuildValue("((si)N)", host, ntohs(sa->sin_port), b);
            if (!t || PyList_Append(out, t) < 0) Py_CLEAR(out);
            Py_XDECREF(t);
        }
    } else if (r == 0) {
        out = Py_NewRef(Py_None);
    }
    for (int k = 0; k < self->ns; k++) Py_CLEAR(self->sout[k]);
    self->ns = 0;
    PyMem_Free(copy);
    return out;
}

static PyMethodDef module_methods[] = {
    {"forward_for_test", DataPlane_forward_for_test, METH_VARARGS,
     "forward_for_test(plane, input_id, data, now): the fast path's copies, or None"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "vmesh.switch._dataplane",
                                       "The switch transport's data-plane loop in C.", -1,
                                       module_methods};

#define INTERN(v, s) if (!(names[v] = PyUnicode_InternFromString(s))) return NULL

PyMODINIT_FUNC PyInit__dataplane(void) {
    INTERN(F_ssrc, "ssrc"); INTERN(F_max_seq, "max_seq"); INTERN(F_kf_pending, "kf_pending");
    INTERN(F_waiting, "waiting"); INTERN(F_fanout, "fanout"); INTERN(F_video, "video");
    INTERN(F_keytest, "keytest"); INTERN(F_cycles, "cycles"); INTERN(F_received, "received");
    INTERN(F_packets, "packets"); INTERN(F_bytes, "bytes"); INTERN(F_jit_ts, "jit_ts");
    INTERN(F_jitter, "jitter"); INTERN(F_jit_arrival, "jit_arrival"); INTERN(F_clock, "clock");
    INTERN(F_cur_ts, "cur_ts"); INTERN(F_frame_interval, "frame_interval");
    INTERN(F_cur_key, "cur_key"); INTERN(F_gop_valid, "gop_valid"); INTERN(F_gop, "gop");
    INTERN(F_gop_bytes, "gop_bytes"); INTERN(F_frame_start, "frame_start");
    INTERN(F_keyframes, "keyframes"); INTERN(F_gop_overflows, "gop_overflows");
    INTERN(F_pending, "pending"); INTERN(F_synced, "synced"); INTERN(F_history, "history");
    INTERN(F_guard, "guard"); INTERN(F_dropped, "dropped"); INTERN(F_last_in_ts, "last_in_ts");
    INTERN(F_mid_frame, "mid_frame"); INTERN(F_seq_offset, "seq_offset");
    INTERN(F_ts_offset, "ts_offset"); INTERN(F_pt, "pt"); INTERN(F_next_seq, "next_seq");
    INTERN(F_last_ts, "last_ts"); INTERN(F_last_sent_at, "last_sent_at");
    INTERN(F_payload_bytes, "payload_bytes"); INTERN(F_dest, "dest");
    INTERN(F_send_errors, "send_errors"); INTERN(F_acquire, "acquire");
    INTERN(F_release, "release"); INTERN(F_inputs, "_inputs"); INTERN(F_config, "config");
    INTERN(F_gop_cache, "gop_cache"); INTERN(F_gop_max_bytes, "gop_max_bytes");
    INTERN(F_gop_max_packets, "gop_max_packets"); INTERN(F_mask, "mask");
    INTERN(F_peer, "peer"); INTERN(F_nack, "nack"); INTERN(F_media_ssrc, "media_ssrc");
    INTERN(F_highest, "highest"); INTERN(F_seen, "_seen"); INTERN(F_last_rtp_at, "last_rtp_at");
    if (PyType_Ready(&DataPlaneType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&DataPlaneType);
    if (PyModule_AddObject(m, "DataPlane", (PyObject *)&DataPlaneType) < 0) return NULL;
    return m;
}
