/* MFCC features for `prep --kind wav`: the python_speech_features / HTK pipeline over
 * the mono samples wav.c decodes, giving a fixed [frames][coeffs] matrix per clip.
 * Everything that depends only on the options and the rate is built once in _new. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include <fftw3.h>

#include "data/data_int.h"

/* The pipeline, per frame of frame_len samples taken every hop samples (only whole
 * frames inside the audio, as HTK does; the tail shorter than a frame is dropped):
 *   1. pre-emphasis y[i] = x[i] - 0.97 x[i-1] (y[0] = x[0]) over the whole signal
 *   2. symmetric Hamming window 0.54 - 0.46 cos(2 pi i / (frame_len - 1))
 *      energy of the frame = sum of the squared windowed samples (used for trimming)
 *   3. real FFT of nfft points (next power of two >= frame_len, zero-padded);
 *      power P[k] = |X[k]|^2 / nfft for k = 0..nfft/2
 *   4. mel_bands triangular filters with centres evenly spaced on the HTK mel scale
 *      mel(f) = 2595 log10(1 + f/700) between 20 Hz and rate/2; filter b rises linearly
 *      from its lower to its centre frequency and falls to its upper one, evaluated at
 *      the bin frequencies k*rate/nfft (unnormalized, peak weight 1)
 *   5. log(E_b + 1e-10), natural log
 *   6. DCT-II with orthonormal scaling, keeping c0..c{coeffs-1}
 * Frames quieter than the loudest by more than trim_db are dropped from both ends, then
 * the result is cut to `frames` or padded with zero rows. */

#define MFCC_PREEMPH 0.97
#define MFCC_LOG_FLOOR 1e-10
#define MFCC_LOW_HZ 20.0
#define MFCC_MAX_FRAME (1 << 22) /* samples; keeps every size below well inside int */
#define MFCC_MAX_BANDS 4096

struct sw__mfcc {
  sw__mfcc_options opt;
  int sample_rate;
  int frame_len;
  int hop;
  int nfft;
  int n_bins;             /* nfft/2 + 1 */
  float *window;          /* [frame_len] */
  float *fbank;           /* [mel_bands][n_bins] */
  int *fbank_lo;          /* first non-zero bin of each band */
  int *fbank_hi;          /* one past the last non-zero bin */
  double *dct;            /* [coeffs][mel_bands] */
  float *fft_in;          /* [nfft]; FFTW plans in place on these two arrays */
  fftwf_complex *fft_out; /* [n_bins] */
  fftwf_plan plan;
  double *log_mel; /* [mel_bands] scratch */
  double *energy;  /* per-frame energy scratch, grown on demand */
  size_t energy_cap;
};

/* FFTW's planner keeps global state; only fftwf_execute is thread safe. */
static pthread_mutex_t mfcc_plan_lock = PTHREAD_MUTEX_INITIALIZER;

static double hz_to_mel(double hz) { return 2595.0 * log10(1.0 + hz / 700.0); }
static double mel_to_hz(double mel) { return 700.0 * (pow(10.0, mel / 2595.0) - 1.0); }

static sw_status check_options(const sw__mfcc_options *opt, int sample_rate) {
  if (opt->frames <= 0 || opt->coeffs <= 0 || opt->mel_bands <= 0)
    return sw_error(SW_STATUS_INVALID,
                    "mfcc: frames (%d), coeffs (%d) and mel_bands (%d) must be positive",
                    opt->frames, opt->coeffs, opt->mel_bands);
  if (opt->mel_bands > MFCC_MAX_BANDS)
    return sw_error(SW_STATUS_INVALID, "mfcc: %d mel bands is more than %d", opt->mel_bands,
                    MFCC_MAX_BANDS);
  if (opt->coeffs > opt->mel_bands)
    return sw_error(SW_STATUS_INVALID, "mfcc: %d coefficients from only %d mel bands", opt->coeffs,
                    opt->mel_bands);
  if (sample_rate <= 0 || sample_rate / 2.0 <= MFCC_LOW_HZ)
    return sw_error(SW_STATUS_INVALID, "mfcc: sample rate %d is too low", sample_rate);
  if (!(opt->frame_ms > 0) || !(opt->hop_ms > 0))
    return sw_error(SW_STATUS_INVALID, "mfcc: frame (%g ms) and hop (%g ms) must be positive",
                    opt->frame_ms, opt->hop_ms);
  double frame_len = floor(opt->frame_ms * sample_rate / 1000.0 + 0.5);
  double hop = floor(opt->hop_ms * sample_rate / 1000.0 + 0.5);
  if (frame_len < 2 || frame_len > MFCC_MAX_FRAME || hop < 1 || hop > MFCC_MAX_FRAME)
    return sw_error(SW_STATUS_INVALID,
                    "mfcc: %g ms frames and %g ms hops at %d Hz give %.0f and %.0f samples",
                    opt->frame_ms, opt->hop_ms, sample_rate, frame_len, hop);
  if ((size_t)opt->frames * (size_t)opt->coeffs > ((size_t)1 << 31))
    return sw_error(SW_STATUS_INVALID, "mfcc: %d frames of %d coefficients is too large",
                    opt->frames, opt->coeffs);
  return SW_STATUS_OK;
}

/* Fills the triangular filters (step 4 above) and each one's non-zero bin range. */
static void build_filterbank(sw__mfcc *m) {
  int bands = m->opt.mel_bands;
  double mel_lo = hz_to_mel(MFCC_LOW_HZ);
  double mel_hi = hz_to_mel(m->sample_rate / 2.0);
  for (int b = 0; b < bands; b++) {
    double f_lo = mel_to_hz(mel_lo + (mel_hi - mel_lo) * b / (bands + 1));
    double f_c = mel_to_hz(mel_lo + (mel_hi - mel_lo) * (b + 1) / (bands + 1));
    double f_hi = mel_to_hz(mel_lo + (mel_hi - mel_lo) * (b + 2) / (bands + 1));
    float *row = m->fbank + (size_t)b * m->n_bins;
    int lo = m->n_bins, hi = 0;
    for (int k = 0; k < m->n_bins; k++) {
      double f = (double)k * m->sample_rate / m->nfft;
      double up = (f - f_lo) / (f_c - f_lo);
      double down = (f_hi - f) / (f_hi - f_c);
      double w = fmin(up, down);
      row[k] = w > 0 ? (float)w : 0.0f;
      if (row[k] > 0) {
        if (k < lo) lo = k;
        hi = k + 1;
      }
    }
    m->fbank_lo[b] = lo < hi ? lo : 0;
    m->fbank_hi[b] = hi;
  }
}

sw_status sw__mfcc_new(const sw__mfcc_options *opt, int sample_rate, sw__mfcc **out) {
  sw_status st = SW_STATUS_OK;
  sw__mfcc *m = NULL;

  *out = NULL;
  st = check_options(opt, sample_rate);
  if (st) goto out;

  m = sw_calloc(1, sizeof *m);
  if (!m) goto nomem;
  m->opt = *opt;
  m->sample_rate = sample_rate;
  m->frame_len = (int)floor(opt->frame_ms * sample_rate / 1000.0 + 0.5);
  m->hop = (int)floor(opt->hop_ms * sample_rate / 1000.0 + 0.5);
  m->nfft = 1;
  while (m->nfft < m->frame_len) m->nfft *= 2;
  m->n_bins = m->nfft / 2 + 1;

  int bands = opt->mel_bands, coeffs = opt->coeffs;
  m->window = sw_malloc((size_t)m->frame_len * sizeof *m->window);
  m->fbank = sw_malloc((size_t)bands * m->n_bins * sizeof *m->fbank);
  m->fbank_lo = sw_malloc((size_t)bands * sizeof *m->fbank_lo);
  m->fbank_hi = sw_malloc((size_t)bands * sizeof *m->fbank_hi);
  m->dct = sw_malloc((size_t)coeffs * bands * sizeof *m->dct);
  m->fft_in = sw_malloc((size_t)m->nfft * sizeof *m->fft_in);
  m->fft_out = sw_malloc((size_t)m->n_bins * sizeof *m->fft_out);
  m->log_mel = sw_malloc((size_t)bands * sizeof *m->log_mel);
  if (!m->window || !m->fbank || !m->fbank_lo || !m->fbank_hi || !m->dct || !m->fft_in ||
      !m->fft_out || !m->log_mel)
    goto nomem;

  for (int i = 0; i < m->frame_len; i++)
    m->window[i] = (float)(0.54 - 0.46 * cos(2.0 * M_PI * i / (m->frame_len - 1)));
  build_filterbank(m);
  for (int k = 0; k < coeffs; k++) {
    double scale = k == 0 ? sqrt(1.0 / bands) : sqrt(2.0 / bands);
    for (int b = 0; b < bands; b++)
      m->dct[(size_t)k * bands + b] = scale * cos(M_PI * k * (2.0 * b + 1.0) / (2.0 * bands));
  }

  /* FFTW_ESTIMATE never writes the arrays while planning. */
  pthread_mutex_lock(&mfcc_plan_lock);
  m->plan = fftwf_plan_dft_r2c_1d(m->nfft, m->fft_in, m->fft_out, FFTW_ESTIMATE);
  pthread_mutex_unlock(&mfcc_plan_lock);
  if (!m->plan) {
    st = sw_error(SW_STATUS_UNSUPPORTED, "mfcc: FFTW could not plan a %d-point FFT", m->nfft);
    goto out;
  }
  *out = m;
  m = NULL;
  goto out;

nomem:
  st = sw_error(SW_STATUS_NOMEM, "mfcc: out of memory");
out:
  sw__mfcc_free(m);
  return st;
}

void sw__mfcc_free(sw__mfcc *m) {
  if (!m) return;
  if (m->plan) {
    pthread_mutex_lock(&mfcc_plan_lock);
    fftwf_destroy_plan(m->plan);
    pthread_mutex_unlock(&mfcc_plan_lock);
  }
  sw_free(m->window);
  sw_free(m->fbank);
  sw_free(m->fbank_lo);
  sw_free(m->fbank_hi);
  sw_free(m->dct);
  sw_free(m->fft_in);
  sw_free(m->fft_out);
  sw_free(m->log_mel);
  sw_free(m->energy);
  sw_free(m);
}

/* Pre-emphasizes and windows the frame starting at sample `start` into m->fft_in
 * (zero-padded to nfft) and returns its energy. */
static double load_frame(sw__mfcc *m, const float *x, size_t start) {
  double energy = 0;
  for (int i = 0; i < m->frame_len; i++) {
    size_t t = start + (size_t)i;
    double y = t > 0 ? (double)x[t] - MFCC_PREEMPH * x[t - 1] : (double)x[t];
    float v = (float)(y * m->window[i]);
    m->fft_in[i] = v;
    energy += (double)v * v;
  }
  for (int i = m->frame_len; i < m->nfft; i++) m->fft_in[i] = 0.0f;
  return energy;
}

/* The cepstrum of the frame already in m->fft_in, coeffs floats into row. */
static void frame_cepstrum(sw__mfcc *m, float *row) {
  int bands = m->opt.mel_bands;
  fftwf_execute(m->plan);
  /* Power spectrum in place of the real parts: fft_out[k][0] = |X[k]|^2 / nfft. */
  for (int k = 0; k < m->n_bins; k++) {
    double re = m->fft_out[k][0], im = m->fft_out[k][1];
    m->fft_out[k][0] = (float)((re * re + im * im) / m->nfft);
  }
  for (int b = 0; b < bands; b++) {
    const float *w = m->fbank + (size_t)b * m->n_bins;
    double e = 0;
    for (int k = m->fbank_lo[b]; k < m->fbank_hi[b]; k++) e += (double)w[k] * m->fft_out[k][0];
    m->log_mel[b] = log(e + MFCC_LOG_FLOOR);
  }
  for (int c = 0; c < m->opt.coeffs; c++) {
    const double *d = m->dct + (size_t)c * bands;
    double s = 0;
    for (int b = 0; b < bands; b++) s += d[b] * m->log_mel[b];
    row[c] = (float)s;
  }
}

/* Not thread safe for one m (it computes in m's scratch buffers); different objects
 * may compute concurrently. The only allocation is the per-frame energy scratch, grown
 * when a clip has more frames than any before it. */
sw_status sw__mfcc_compute(sw__mfcc *m, const float *samples, size_t n, float *out) {
  sw_status st = SW_STATUS_OK;
  const size_t coeffs = (size_t)m->opt.coeffs;
  const size_t frames_out = (size_t)m->opt.frames;

  if (n < (size_t)m->frame_len) {
    st = sw_error(SW_STATUS_TRUNCATED, "mfcc: %zu samples is shorter than one %d-sample frame", n,
                  m->frame_len);
    goto out;
  }
  size_t n_frames = 1 + (n - (size_t)m->frame_len) / (size_t)m->hop;
  if (n_frames > m->energy_cap) {
    double *e = sw_realloc(m->energy, n_frames * sizeof *e);
    if (!e) {
      st = sw_error(SW_STATUS_NOMEM, "mfcc: out of memory for %zu frames", n_frames);
      goto out;
    }
    m->energy = e;
    m->energy_cap = n_frames;
  }

  double max_energy = 0;
  for (size_t f = 0; f < n_frames; f++) {
    m->energy[f] = load_frame(m, samples, f * (size_t)m->hop);
    if (m->energy[f] > max_energy) max_energy = m->energy[f];
  }
  if (!(max_energy > 0)) {
    st = sw_error(SW_STATUS_TRUNCATED, "mfcc: audio is silent throughout (%zu samples)", n);
    goto out;
  }

  size_t first = 0, last = n_frames; /* kept frames: [first, last) */
  if (m->opt.trim_db > 0) {
    double threshold = max_energy * pow(10.0, -m->opt.trim_db / 10.0);
    while (m->energy[first] < threshold) first++; /* stops at the loudest frame at worst */
    while (m->energy[last - 1] < threshold) last--;
  }

  size_t kept = last - first;
  if (kept > frames_out) kept = frames_out;
  for (size_t f = 0; f < kept; f++) {
    load_frame(m, samples, (first + f) * (size_t)m->hop);
    frame_cepstrum(m, out + f * coeffs);
  }
  memset(out + kept * coeffs, 0, (frames_out - kept) * coeffs * sizeof *out);

out:
  return st;
}
