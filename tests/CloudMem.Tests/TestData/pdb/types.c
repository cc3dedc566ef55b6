/* Test input for the PDB reader (see make.sh). Plain C, no headers: built for x86_64-pc-windows-msvc. */

typedef struct _LIST_ENTRY {
    struct _LIST_ENTRY *Flink;
    struct _LIST_ENTRY *Blink;
} LIST_ENTRY, *PLIST_ENTRY;

typedef enum _COLOR { ColorRed = 1, ColorGreen = 2, ColorBlue = -3 } COLOR;

struct _INNER {
    unsigned short Tag;
    unsigned char Bytes[3];
};

struct _DEFINED_LATER;   /* only forward-declared here: pointed to before its definition */

typedef struct _OUTER {
    LIST_ENTRY Links;
    struct _INNER Inner;
    union {
        unsigned int AsUlong;
        float AsFloat;
    } Value;
    unsigned int Flag1 : 1;
    unsigned int Flag2 : 3;
    unsigned int Rest : 28;
    unsigned long long Wide : 40;
    unsigned long long WideRest : 24;
    char Name[15];
    struct _OUTER *Parent;
    struct _DEFINED_LATER *Later;
    COLOR Color;
    const volatile int Qualified;
    int (*Callback)(int, char *);
    long long Matrix[2][3];
    union {                       /* anonymous: members appear in _OUTER's own field list */
        void *Pointer;
        unsigned long long Raw;
    };
    struct {
        unsigned short Low;
        unsigned short High;
    };
    unsigned short Wide16;
    double Real;
    signed char Signed8;
    unsigned char Unsigned8;
    long Long32;
    unsigned long Ulong32;
    unsigned __int64 *PointerToU64;
} OUTER, *POUTER;

struct _DEFINED_LATER {
    int Value;
    OUTER *Back;
};

struct _EPROCESS_LIKE {
    unsigned char Header[24];
    LIST_ENTRY ActiveProcessLinks;
    void *UniqueProcessId;
    unsigned char ImageFileName[15];
    union {
        unsigned int Flags;
        struct {
            unsigned int CreateReported : 1;
            unsigned int Spare : 2;
            unsigned int Exited : 1;
        };
    };
};

LIST_ENTRY PsActiveProcessHead;
OUTER g_Outer;
struct _EPROCESS_LIKE g_Process;
struct _DEFINED_LATER g_Later;
int g_Counter = 5;
static int s_Hidden = 7;

__declspec(dllexport) int AddNumbers(int a, int b) { return a + b + g_Outer.Inner.Tag + g_Counter + s_Hidden; }
__declspec(dllexport) void TouchOuter(POUTER o) { o->Flag2 = 3; o->Color = ColorBlue; }
__declspec(dllexport) unsigned int ReadFlags(struct _EPROCESS_LIKE *p) { return p->Exited + (unsigned int)g_Later.Value; }
