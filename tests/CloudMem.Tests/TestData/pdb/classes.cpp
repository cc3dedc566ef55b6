// C++ test input for the PDB reader (see make.sh): classes with unique names, a base class, methods, static
// members, a virtual function table, and a struct whose field list is longer than one record (LF_INDEX).

namespace Test {

class Base {
public:
    int BaseValue;
    virtual int Get() const { return BaseValue; }
};

class Derived : public Base {
public:
    long long DerivedValue;
    static int Count;
    int Get() const override { return BaseValue + (int)DerivedValue; }
    enum class Mode : unsigned char { Off = 0, On = 200 };
    Mode CurrentMode;
};

int Derived::Count = 3;

#define M1(p) int LongMemberNameToFillTheFieldList_##p;
#define M4(p) M1(p##0) M1(p##1) M1(p##2) M1(p##3)
#define M16(p) M4(p##0) M4(p##1) M4(p##2) M4(p##3)
#define M64(p) M16(p##0) M16(p##1) M16(p##2) M16(p##3)
#define M256(p) M64(p##0) M64(p##1) M64(p##2) M64(p##3)
#define M1024(p) M256(p##0) M256(p##1) M256(p##2) M256(p##3)

struct Huge {
    M1024(0)
    M1024(1)
    int LastMember;
};

}  // namespace Test

Test::Derived g_Derived;
Test::Huge g_Huge;

extern "C" __declspec(dllexport) int Probe(Test::Base *p) { return p->Get() + g_Huge.LastMember + Test::Derived::Count; }
