//! Lab harness for ferrolb: network namespaces, FRR routers, a real kube-apiserver and the
//! scenarios run against them. The harness grows with the lab; today it is empty.
