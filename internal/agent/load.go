package agent

// windowSize is how many samples the load is averaged over (PROTOCOL.md §2).
const windowSize = 5

// sampleLoad is the Webots simulation server's formula for one sample:
// max(cpu, (swap + memory + gpuMemory) / 3, gpu); absent components count as 0.
func sampleLoad(r Reading) float64 {
	v := func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	}
	return clampPct(max(v(r.CPU), (v(r.Swap)+v(r.Memory)+v(r.GPUMemory))/3, v(r.GPU)))
}

// window averages the load of the last windowSize samples.
type window struct {
	loads [windowSize]float64
	n, i  int
}

// add records one sample and returns the average over the window.
func (w *window) add(r Reading) float64 {
	w.loads[w.i] = sampleLoad(r)
	w.i = (w.i + 1) % windowSize
	if w.n < windowSize {
		w.n++
	}
	var sum float64
	for k := 0; k < w.n; k++ {
		sum += w.loads[k]
	}
	return sum / float64(w.n)
}
