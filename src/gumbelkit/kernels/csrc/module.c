/* The Python module object for the kernels. The kernels themselves are plain C
 * functions with raw pointers, called through ctypes (see kernels/_lib.py);
 * the module exists so that setuptools builds and installs the shared library. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef gk_module = {PyModuleDef_HEAD_INIT, "_gk",
                                       "gumbelkit fused CPU kernels (called via ctypes)", -1,
                                       NULL};

PyMODINIT_FUNC PyInit__gk(void) { return PyModule_Create(&gk_module); }
