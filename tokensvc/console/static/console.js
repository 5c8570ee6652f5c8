// The console's own script (the pages work without it): a dialog before each change that asks
// for one, the live refresh paused while the keyboard is inside the rooms, and the usage chart.
'use strict';

// A form with data-confirm asks first; confirmed, it posts with confirmed=yes (without this
// script the server shows a page that asks the same).
document.addEventListener('submit', (event) => {
  const form = event.target;
  const question = form.dataset && form.dataset.confirm;
  if (!question) return;
  if (!window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (!form.querySelector('input[name="confirmed"]')) {
    const field = document.createElement('input');
    field.type = 'hidden';
    field.name = 'confirmed';
    field.value = 'yes';
    form.appendChild(field);
  }
}, true);

// The rooms refresh every second, except while focus is inside them (a keyboard user choosing
// a role would lose the select) or a dialog is open.
document.addEventListener('htmx:beforeRequest', (event) => {
  const polled = event.detail && event.detail.elt;
  if (polled && polled.id === 'rooms' && polled.contains(document.activeElement)
      && document.activeElement !== polled) {
    event.preventDefault();
  }
});

// The usage chart, from the JSON the page carries; the table under it has the same numbers.
function drawUsage() {
  const data = document.getElementById('usage-series');
  const target = document.getElementById('usage-chart');
  if (!data || !target || typeof window.uPlot !== 'function') return;
  const series = JSON.parse(data.textContent);
  const step = series.step === 'hour' ? 3600 : 86400;
  const first = series.times[0];
  const last = series.times[series.times.length - 1] + step;
  const width = () => Math.max(280, Math.min(target.clientWidth || 800, 1000));
  const chart = new window.uPlot({
    width: width(),
    height: 260,
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    scales: { x: { time: true, range: () => [first, last] }, y: { range: (u, low, high) => [0, Math.max(1, high * 1.1)] } },
    series: [
      {},
      { label: 'Participant-minutes', stroke: '#1f6feb', width: 2, fill: 'rgba(31,111,235,0.08)', points: { show: true, size: 6 } },
      { label: 'Room-minutes', stroke: '#b35900', width: 2, dash: [6, 4], points: { show: true, size: 6 } },
    ],
    axes: [{}, { label: 'minutes' }],
  }, [series.times, series.participant, series.room], target);
  window.addEventListener('resize', () => chart.setSize({ width: width(), height: 260 }));
  target.dataset.drawn = 'true';
}
document.addEventListener('DOMContentLoaded', drawUsage);
