/* The probe's escape verbs (probe_escape.c). */
#pragma once
#include <stdio.h>

/* Runs MODE if it is an escape verb and returns 0; -1 if it is none. */
int escape_main(const char* mode, int argc, char** argv, FILE* out);
