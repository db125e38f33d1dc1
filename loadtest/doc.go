// Package loadtest holds the load generator and the fakes of the outside world
// that tests, the demo and manual runs use. Everything here talks to Tocsin only
// through its public HTTP and MQTT interfaces, as a real client or device would.
package loadtest
