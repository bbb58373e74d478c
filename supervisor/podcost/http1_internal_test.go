package podcost

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	long := strings.Repeat("x", maxBody+100)
	for _, tc := range []struct {
		name, in string
		code     int
		status   string
		body     string
		err      error // wanted by errors.Is; nil for none
	}{
		{"ok, body not read", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{...}", 200, "200 OK", "", nil},
		{"length", "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nnope and more", 403, "403 Forbidden", "nope", nil},
		{"chunked", "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 404, "404 Not Found", "abcde", nil},
		{"to the end", "HTTP/1.0 500 Internal Server Error\r\n\r\nboom", 500, "500 Internal Server Error", "boom", nil},
		{"bare LF", "HTTP/1.1 401 Unauthorized\nContent-Length: 2\n\nno", 401, "401 Unauthorized", "no", nil},
		{"continue first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Length: 1\r\n\r\nx", 409, "409 Conflict", "x", nil},
		{"no reason", "HTTP/1.1 429\r\nContent-Length: 0\r\n\r\n", 429, "429", "", nil},
		{"body capped", "HTTP/1.1 500 X\r\n\r\n" + long, 500, "500 X", long[:maxBody], nil},
		{"chunked capped", "HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n" + "10100\r\n" + long, 500, "500 X", long[:maxBody], nil},
		{"body cut short", "HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nab", 403, "403 Forbidden", "ab", nil},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", "", errMalformed},
		{"HTTP/2", "HTTP/2 200\r\n\r\n", 0, "", "", errMalformed},
		{"bad code", "HTTP/1.1 2x0 OK\r\n\r\n", 0, "", "", errMalformed},
		{"bad header", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 0, "", "", errMalformed},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, "", "", errMalformed},
		{"header too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("y", 5000) + "\r\n\r\n", 0, "", "", errMalformed},
		{"nothing", "", 0, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := readResponse(bufio.NewReaderSize(strings.NewReader(tc.in), 4096))
			if tc.code == 0 {
				if err == nil || tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("readResponse = %+v, %v; want an error (%v)", r, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.code != tc.code || r.status != tc.status || string(r.body) != tc.body {
				t.Errorf("readResponse = %d %q body %d bytes %.40q; want %d %q body %d bytes %.40q",
					r.code, r.status, len(r.body), r.body, tc.code, tc.status, len(tc.body), tc.body)
			}
		})
	}
}

// An API server's answer is untrusted input: nothing it sends may panic or
// make readResponse read more than maxBody of a body.
func FuzzReadResponse(f *testing.F) {
	f.Add("HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	f.Add("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := readResponse(bufio.NewReader(strings.NewReader(in)))
		if err == nil && (r.code < 200 || r.code > 999 || len(r.body) > maxBody) {
			t.Errorf("readResponse(%q) = code %d, %d body bytes", in, r.code, len(r.body))
		}
	})
}
