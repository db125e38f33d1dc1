// Package loadtest holds the load generator that tests, the demo and manual
// runs use; the fakes of the outside world it drives live in loadtest/fake.
// Everything here talks to Tocsin only through its public HTTP and MQTT
// interfaces, as a real client or device would.
package loadtest
