/* A stand-in for libnvidia-ml.so.1 with the functions and structures the
 * agent binds (nvml.h), for machines without an NVIDIA driver. Two GPUs;
 * FAKE_NVML_INIT=fail makes nvmlInit_v2 fail as a driver mismatch does,
 * FAKE_NVML_INIT=hang makes it never return, as a broken driver's did;
 * FAKE_NVML_COUNT=N reports N devices (a broken driver's absurd count). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { int index; } device_t;

static device_t devices[2] = {{0}, {1}};

int nvmlInit_v2(void) {
	const char *v = getenv("FAKE_NVML_INIT");
	if (v && strcmp(v, "hang") == 0)
		for (;;) pause();
	return v && strcmp(v, "fail") == 0 ? 18 : 0; /* NVML_ERROR_LIB_RM_VERSION_MISMATCH */
}

const char *nvmlErrorString(int ret) {
	return ret == 18 ? "RM has detected an NVML/RM version mismatch." : "Unknown Error";
}

int nvmlDeviceGetCount_v2(unsigned int *n) {
	const char *v = getenv("FAKE_NVML_COUNT");
	*n = v ? (unsigned int)strtoul(v, NULL, 10) : 2;
	return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, device_t **d) {
	if (i >= 2) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
	*d = &devices[i];
	return 0;
}

int nvmlDeviceGetUtilizationRates(device_t *d, nvmlUtilization_t *u) {
	u->gpu = d->index ? 75 : 30;
	u->memory = d->index ? 40 : 10;
	return 0;
}

int nvmlDeviceGetMemoryInfo(device_t *d, nvmlMemory_t *m) {
	m->total = (d->index ? 16ULL : 8ULL) << 30;
	m->used = (d->index ? 6ULL : 1ULL) << 30;
	m->free = m->total - m->used;
	return 0;
}
