package podcost

import "time"

// SetRequestTimeout shortens the time a write may take, so that tests of a
// stalled server need not wait seconds. Not for parallel tests.
func SetRequestTimeout(d time.Duration) (restore func()) {
	old := requestTimeout
	requestTimeout = d
	return func() { requestTimeout = old }
}
