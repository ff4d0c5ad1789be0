// Placeholder for the checkpoint-load benchmark (being written).
int main() { return 0; }
