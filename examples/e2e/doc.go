// Package e2e holds drainit's end-to-end tests in real containers: drainit
// and the demo app (../demo) are built static, copied into a FROM scratch
// image with the ENTRYPOINT and STOPSIGNAL of Dockerfile.example, and run
// with the Docker engine. It has no code of its own, only tests; they need
// a running engine (no registry: nothing is pulled) and, for the contrast
// with tini, Debian's tini package (tini-static).
package e2e
