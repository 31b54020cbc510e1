#!/usr/bin/env python3
"""Fake OF1.3 switch on a unix socket: answers what ovs-ofctl needs and prints
every received frame as hex, one per line, to stdout. Usage:
  ofcapture.py SOCK -- ovs-ofctl -O OpenFlow13 add-flow unix:SOCK 'flow'
Runs the command, prints frames (excluding HELLO/BARRIER/ECHO/FEATURES)."""
import os, socket, struct, subprocess, sys, threading
sock_path = sys.argv[1]; cmd = sys.argv[sys.argv.index('--') + 1:]
if os.path.exists(sock_path): os.unlink(sock_path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind(sock_path); srv.listen(4)
srv.settimeout(5)
frames = []
def serve(c):
    buf = b''
    c.sendall(struct.pack('!BBHI', 4, 0, 16, 0) + struct.pack('!HHI', 1, 8, 0x10))
    c.settimeout(5)
    while True:
        try: d = c.recv(65536)
        except Exception: return
        if not d: return
        buf += d
        while len(buf) >= 8:
            v, t, l, x = struct.unpack('!BBHI', buf[:8])
            if len(buf) < l: break
            f, buf = buf[:l], buf[l:]
            if t == 0: continue
            if t == 2: c.sendall(struct.pack('!BBHI', 4, 3, l, x) + f[8:]); continue
            if t == 5: c.sendall(struct.pack('!BBHIQIBBHII', 4, 6, 32, x, 1, 0, 254, 0, 0, 0, 0)); continue
            if t == 18:
                mp = struct.unpack('!H', f[8:10])[0]
                body = b''
                if mp == 12:
                    body = b''.join(struct.pack('!HB5x32sQQII', 64, i, b'table%d' % i, 2**64-1, 2**64-1, 0, 1000000) for i in range(0))
                c.sendall(struct.pack('!BBHIHHI', 4, 19, 16 + len(body), x, mp, 0, 0) + body); continue
            if t == 20: c.sendall(struct.pack('!BBHI', 4, 21, 8, x)); continue
            if t == 4 and len(f) >= 16:
                exp, et = struct.unpack('!II', f[8:16])
                if exp == 0x4f4e4600 and et == 2300:
                    bid, typ, flags = struct.unpack('!IHH', f[16:24])
                    c.sendall(struct.pack('!BBHIIIIHH', 4, 4, 24, x, exp, et, bid, typ + 1, flags))
            frames.append(f.hex())
def accept():
    while True:
        try: c, _ = srv.accept()
        except Exception: return
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
if r.returncode != 0: sys.stderr.write(r.stderr); 
for f in frames: print(f)
os.unlink(sock_path)
sys.exit(r.returncode)
