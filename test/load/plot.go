package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot draws each phase's series as a PNG: latency (p50 solid, p99 dashed) above,
// throughput (answers per second in each bucket) below, on the same time axis, with the legend
// beside the panels so that it hides no data.
func (r *Result) WritePlot(path string) error {
	lat, thr := plot.New(), plot.New()
	lat.Title.Text = fmt.Sprintf("onsale load: %s (run %s)", r.Scenario, r.RunID)
	lat.Y.Label.Text = "latency (ms)"
	thr.Y.Label.Text = "answers/s"
	for _, p := range []*plot.Plot{lat, thr} {
		p.Add(plotter.NewGrid())
		p.X.Min = 0
	}
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.ThumbnailWidth = 0.4 * vg.Inch
	var widths []time.Duration
	minLat, maxLat, maxT := math.Inf(1), 0.0, 0.0
	n := 0
	for _, ph := range r.Phases {
		var p50, p99, rps plotter.XYs
		width := time.Duration(ph.BucketS * float64(time.Second))
		for _, pt := range ph.Series {
			mid := pt.T + ph.BucketS/2
			if len(rps) > 0 || pt.Requests > 0 { // from the phase's first answer on
				rps = append(rps, plotter.XY{X: mid, Y: pt.RPS})
			}
			maxT = max(maxT, pt.T+ph.BucketS)
			if pt.Requests == 0 {
				continue // no answer: no latency to draw
			}
			p50 = append(p50, plotter.XY{X: mid, Y: pt.P50})
			p99 = append(p99, plotter.XY{X: mid, Y: pt.P99})
			minLat, maxLat = min(minLat, pt.P50), max(maxLat, pt.P99)
		}
		if len(p50) == 0 {
			continue
		}
		widths = append(widths, width)
		c := plotutil.Color(n)
		n++
		l50, err := line(p50, c, nil, 1.5)
		if err != nil {
			return err
		}
		l99, err := line(p99, c, []vg.Length{vg.Points(5), vg.Points(3)}, 1.5)
		if err != nil {
			return err
		}
		lr, err := line(rps, c, nil, 1.5)
		if err != nil {
			return err
		}
		lat.Add(l50, l99)
		thr.Add(lr)
		legend.Add(ph.Name, lr)
	}
	if n == 0 {
		lat.Title.Text += ": no answers to draw"
		maxT = 1
	} else { // the key to the latency lines, in grey
		gray := color.Gray{Y: 96}
		k50, _ := line(plotter.XYs{{}}, gray, nil, 1.5)
		k99, _ := line(plotter.XYs{{}}, gray, []vg.Length{vg.Points(5), vg.Points(3)}, 1.5)
		legend.Add("")
		legend.Add("latency p50", k50)
		legend.Add("latency p99", k99)
	}
	if maxLat > 0 && maxLat/minLat >= 20 { // more than a decade apart: a log scale shows both ends
		lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		lat.Y.Label.Text = "latency (ms, log scale)"
	} else {
		lat.Y.Min = 0
	}
	thr.Y.Min = 0
	thr.Y.Tick.Marker = niceTicks{}
	lat.X.Max, thr.X.Max = maxT, maxT
	lat.X.Tick.Marker, thr.X.Tick.Marker = niceTicks{}, niceTicks{}
	thr.X.Label.Text = "seconds from the start of each phase; " + bucketText(widths)

	const w, h, legendW = 12 * vg.Inch, 7 * vg.Inch, 3.2 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))
	dc := draw.New(img)
	panels := draw.Crop(dc, 0, -legendW, 0, 0)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadY: vg.Points(12)}
	canvases := plot.Align([][]*plot.Plot{{lat}, {thr}}, tiles, panels)
	lat.Draw(canvases[0][0])
	thr.Draw(canvases[1][0])
	legend.Draw(draw.Crop(dc, w-legendW+vg.Points(12), 0, 0, -vg.Points(28)))

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func line(xys plotter.XYs, c color.Color, dashes []vg.Length, width float64) (*plotter.Line, error) {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(width)
	return l, nil
}

// niceTicks marks about eight round values (steps of 1, 2 or 5 times a power of ten) and labels
// them without needless decimals.
type niceTicks struct{}

// Ticks implements plot.Ticker.
func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if hi <= lo {
		return []plot.Tick{{Value: lo, Label: fmt.Sprint(lo)}}
	}
	raw := (hi - lo) / 8
	step := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*step >= raw {
			step *= m
			break
		}
	}
	digits := max(0, -int(math.Floor(math.Log10(step))))
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e6; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("%.*f", digits, v)})
	}
	return ticks
}

// bucketText says how long the plot's buckets are.
func bucketText(widths []time.Duration) string {
	if len(widths) == 0 {
		return "no buckets"
	}
	lo, hi := widths[0], widths[0]
	for _, d := range widths {
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo == hi {
		return "one point per " + lo.String()
	}
	return fmt.Sprintf("one point per %s to %s (by phase)", lo, hi)
}
