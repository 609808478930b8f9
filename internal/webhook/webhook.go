// Package webhook holds what webhook deliveries are built on: signatures in the Standard Webhooks
// form (https://www.standardwebhooks.com), which receivers verify with any of its libraries, and
// a guard that keeps deliveries away from the deployment's own network.
package webhook
