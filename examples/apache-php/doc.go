// Package apachephp is the first user's app run under drainit for real:
// Apache 2.4 (prefork) with mod_php, whose page start.php starts jobs the
// way the seed's app does, exec("php job.php … &"), each holding a lock
// file while it works. Its image is ../../Dockerfile.example as written;
// the tests build it on stand-ins for its base images made from Debian's
// packages (../../hack/standin-images.sh) and stop it with docker stop.
package apachephp
