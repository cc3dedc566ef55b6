#!/bin/sh
# Regenerates the PDB test data from types.c and classes.cpp with Debian's clang-cl and lld-link (apt-get install clang lld):
#   types.pdb / types.dll      what the tests read (committed, so the tests need no compiler)
#   types.map                  lld-link's map file: public symbols with their RVA (+ image base)
#   *.txt                      llvm-pdbutil and llvm-readobj dumps: the independent truth the tests compare with
# Run from any directory: sh tests/CloudMem.Tests/TestData/pdb/make.sh
set -eu
cd "$(dirname "$0")"
CL=$(command -v clang-cl || command -v clang-cl-14)
LINK=$(command -v lld-link || command -v lld-link-14)
PDBUTIL=$(command -v llvm-pdbutil || command -v llvm-pdbutil-14)
trap 'rm -f types.obj classes.obj types.lib' EXIT
"$CL" --target=x86_64-pc-windows-msvc /nologo /Z7 /GS- /O1 /c types.c /Fotypes.obj
"$CL" --target=x86_64-pc-windows-msvc /nologo /Z7 /GS- /GR- /O1 /c classes.cpp /Foclasses.obj
# /brepro: the GUID is a hash of the output; built in this directory (no temporary paths), the same input gives the same files.
"$LINK" /nologo /debug /brepro /dll /noentry /nodefaultlib /pdbaltpath:types.pdb \
    /pdb:types.pdb /map:types.map /out:types.dll types.obj classes.obj
# Test::Huge's 2048 generated members (offset 4 * their base-4 number) are left out of the dump to keep it small.
"$PDBUTIL" dump -types types.pdb | grep -v 'LF_MEMBER \[name = `LongMemberNameToFillTheFieldList_' > types.txt
"$PDBUTIL" dump -publics types.pdb > publics.txt
"$PDBUTIL" dump -summary types.pdb > summary.txt
"$PDBUTIL" dump -section-headers -dbi-stream types.pdb > sections.txt 2>/dev/null || "$PDBUTIL" dump -section-headers types.pdb > sections.txt
READOBJ=$(command -v llvm-readobj || command -v llvm-readobj-14)
"$READOBJ" --coff-debug-directory types.dll > debug-directory.txt
echo "made types.pdb ($(wc -c < types.pdb) bytes), types.dll ($(wc -c < types.dll) bytes)"
