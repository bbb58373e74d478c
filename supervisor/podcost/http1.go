package podcost

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// maxBody bounds how much of an answer's body is read: the message of an
// error Status fits many times over.
const maxBody = 64 << 10

// response is what matters of an HTTP answer.
type response struct {
	code   int
	status string // "403 Forbidden"
	body   []byte // at most maxBody; only read when code is not 2xx
}

// exchange sends one request over a new connection and reads the answer:
// HTTP/1.1 with Connection: close, over TLS when tlsConf is not nil. It is
// all that one small write every few seconds needs; linking net/http
// instead adds 1.15 MB to drainit and 0.5 to 1.2 MiB to its idle RSS. ctx
// bounds the whole exchange; when it ends first, the error is ctx's.
func exchange(ctx context.Context, addr string, tlsConf *tls.Config, head string, body []byte) (response, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return response{}, ctxErr(ctx, err)
	}
	defer raw.Close()
	// Closing the connection is what ends a read or write in progress.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	conn := raw
	if tlsConf != nil {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return response{}, ctxErr(ctx, err)
		}
		conn = tc
	}
	if _, err := io.WriteString(conn, head+"Content-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+string(body)); err != nil {
		return response{}, ctxErr(ctx, err)
	}
	r, err := readResponse(bufio.NewReader(conn))
	return r, ctxErr(ctx, err)
}

// ctxErr prefers ctx's error to the one its end caused (a closed
// connection), so that a timeout reads as one.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

var errMalformed = errors.New("malformed HTTP answer")

// readResponse reads a status line, the headers, and for an answer other
// than 2xx the body, plain, chunked or up to the end of the connection.
// Informational (1xx) answers are skipped.
func readResponse(r *bufio.Reader) (response, error) {
	for {
		line, err := readLine(r)
		if err != nil {
			return response{}, err
		}
		proto, status, _ := strings.Cut(line, " ")
		code, err := strconv.Atoi(status[:min(3, len(status))])
		if !strings.HasPrefix(proto, "HTTP/1.") || len(status) < 3 || err != nil || code < 100 || code > 999 {
			return response{}, fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		length, chunked := int64(-1), false
		for {
			h, err := readLine(r)
			if err != nil {
				return response{}, err
			}
			if h == "" {
				break
			}
			k, v, ok := strings.Cut(h, ":")
			if !ok {
				return response{}, fmt.Errorf("%w: header %q", errMalformed, h)
			}
			v = strings.TrimSpace(v)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "content-length":
				if length, err = strconv.ParseInt(v, 10, 64); err != nil || length < 0 {
					return response{}, fmt.Errorf("%w: Content-Length %q", errMalformed, v)
				}
			case "transfer-encoding":
				chunked = strings.Contains(strings.ToLower(v), "chunked")
			}
		}
		resp := response{code: code, status: status}
		if code < 200 {
			continue // 100 Continue and the like: the answer follows
		}
		if code/100 == 2 {
			return resp, nil
		}
		// A body cut short still tells the status: read errors are dropped.
		switch {
		case chunked:
			resp.body, _ = readChunked(r)
		case length >= 0:
			resp.body, _ = io.ReadAll(io.LimitReader(r, min(length, maxBody)))
		default:
			resp.body, _ = io.ReadAll(io.LimitReader(r, maxBody))
		}
		return resp, nil
	}
}

// readChunked reads a chunked body, up to maxBody of it.
func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for len(body) < maxBody {
		line, err := readLine(r)
		if err != nil {
			return body, err
		}
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			return body, fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 {
			return body, nil
		}
		chunk, err := io.ReadAll(io.LimitReader(r, min(n, int64(maxBody-len(body)))))
		body = append(body, chunk...)
		if err != nil || int64(len(chunk)) < n {
			return body, err
		}
		if _, err := readLine(r); err != nil { // the CRLF after the data
			return body, err
		}
	}
	return body, nil
}

// readLine reads one line of the head, without its CRLF. A line longer
// than the reader's buffer is malformed: no API server sends one.
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("%w: a header line over %d bytes", errMalformed, r.Size())
	}
	if err == io.EOF && len(b) == 0 {
		return "", io.ErrUnexpectedEOF
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
