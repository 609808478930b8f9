package payment_test

import (
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/onsale-dev/onsale/internal/platform/logging"
)

func discardLog() *slog.Logger { return logging.Discard() }

func noopMeter() metric.Meter { return noop.NewMeterProvider().Meter("payment-test") }
